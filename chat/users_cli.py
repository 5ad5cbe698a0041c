"""`users` subcommands: add, list, passwd, role, key (accounts for the web login and the API)."""

from __future__ import annotations

import getpass
import sys

from chat.config import Config
from chat.errors import BadInput


def register(sub) -> None:
    p = sub.add_parser("users", help="manage accounts and API keys")
    users = p.add_subparsers(dest="users_command", required=True, metavar="ACTION")

    q = users.add_parser("add", help="create an account (password from --password, a prompt "
                         "or one line on stdin)")
    q.add_argument("name")
    q.add_argument("--admin", action="store_true", help="give it the admin role")
    q.add_argument("--password", default=None, help="(visible in the process list: prefer "
                   "the prompt or stdin)")
    q.set_defaults(func=cmd_add)

    q = users.add_parser("list", help="accounts, roles and number of API keys")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_list)

    q = users.add_parser("passwd", help="set a new password")
    q.add_argument("name")
    q.add_argument("--password", default=None)
    q.set_defaults(func=cmd_passwd)

    q = users.add_parser("role", help="make an account admin or user")
    q.add_argument("name")
    q.add_argument("role", choices=["user", "admin"])
    q.set_defaults(func=cmd_role)

    q = users.add_parser("key", help="print a new API key for NAME (shown once)")
    q.add_argument("name")
    q.add_argument("--revoke", action="store_true", help="delete NAME's keys instead")
    q.set_defaults(func=cmd_key)


def _store(cfg: Config):
    from feedback.store import Store

    return Store(cfg.db_path)


def read_password(given: str | None, confirm: bool = True) -> str:
    """--password, else a hidden prompt (twice) on a terminal, else one line of stdin."""
    if given is not None:
        return given
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if confirm and getpass.getpass("again: ") != first:
        raise BadInput("the two passwords differ")
    return first


def cmd_add(cfg: Config, args) -> int:
    from chat.auth import add_user, check_name, check_password_rules

    name = check_name(args.name)  # before asking for a password
    password = read_password(args.password)
    check_password_rules(password)
    row = add_user(_store(cfg), name, password, "admin" if args.admin else "user")
    print(f"added {row['role']} {row['name']}")
    return 0


def cmd_list(cfg: Config, args) -> int:
    import json

    from chat.auth import list_users

    rows = list_users(_store(cfg))
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no users (add one with: launch.py users add NAME --admin)")
    for r in rows:
        print(f"{r['name']:<24} {r['role']:<6} keys={r['api_keys']}  since {r['created_at']}")
    return 0


def cmd_passwd(cfg: Config, args) -> int:
    from chat.auth import get_user, set_password

    store = _store(cfg)
    if get_user(store, args.name) is None:
        from chat.errors import NotFound

        raise NotFound(f"no user {args.name!r}")
    set_password(store, args.name, read_password(args.password))
    print(f"password of {args.name} changed")
    return 0


def cmd_role(cfg: Config, args) -> int:
    from chat.auth import set_role

    set_role(_store(cfg), args.name, args.role)
    print(f"{args.name} is now {args.role}")
    return 0


def cmd_key(cfg: Config, args) -> int:
    from chat.auth import create_api_key, get_user, revoke_api_keys

    if args.revoke:
        store = _store(cfg)
        if get_user(store, args.name) is None:  # a typo must not look like a revoked key
            from chat.errors import NotFound

            raise NotFound(f"no user {args.name!r}")
        print(f"revoked {revoke_api_keys(store, args.name)} key(s) of {args.name}")
        return 0
    print(create_api_key(_store(cfg), args.name))
    return 0
