"""`users`: accounts and API keys for the web login and the API; `users forget` erases one
(chat/forget.py)."""

from __future__ import annotations

import getpass
import json
import sys

from chat import auth
from chat.config import Config
from chat.errors import BadInput, NotFound
from chat.forget import forget_user
from feedback.store import Store


def register(sub) -> None:
    _register_users(sub)


# ---------------------------------------------------------------------------- users


def _register_users(sub) -> None:
    p = sub.add_parser("users", help="manage accounts and API keys")
    users = p.add_subparsers(dest="users_command", required=True, metavar="ACTION")

    q = users.add_parser("add", help="create an account (password from --password, a prompt "
                         "or one line on stdin)")
    q.add_argument("name")
    q.add_argument("--admin", action="store_true", help="give it the admin role")
    q.add_argument("--password", default=None, help="(visible in the process list: prefer "
                   "the prompt or stdin)")
    q.set_defaults(func=users_add)

    q = users.add_parser("list", help="accounts, roles and number of API keys")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=users_list)

    q = users.add_parser("passwd", help="set a new password")
    q.add_argument("name")
    q.add_argument("--password", default=None)
    q.set_defaults(func=users_passwd)

    q = users.add_parser("role", help="make an account admin or user")
    q.add_argument("name")
    q.add_argument("role", choices=["user", "admin"])
    q.set_defaults(func=users_role)

    q = users.add_parser("key", help="print a new API key for NAME (shown once)")
    q.add_argument("name")
    q.add_argument("--revoke", action="store_true", help="delete NAME's keys instead")
    q.set_defaults(func=users_key)

    q = users.add_parser("forget", help="delete NAME's account and every row of theirs, "
                         "retire the adapters their feedback trained, queue a retrain")
    q.add_argument("name")
    q.add_argument("--no-retrain", action="store_true",
                   help="do not queue a run when the served adapter is retired")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=users_forget)


def _store(cfg: Config):
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


def users_add(cfg: Config, args) -> int:
    name = auth.check_name(args.name)  # before asking for a password
    password = read_password(args.password)
    auth.check_password_rules(password)
    row = auth.add_user(_store(cfg), name, password, "admin" if args.admin else "user")
    print(f"added {row['role']} {row['name']}")
    return 0


def users_list(cfg: Config, args) -> int:
    rows = auth.list_users(_store(cfg))
    if args.json:
        print(json.dumps(rows))
        return 0
    if not rows:
        print("no users (add one with: launch.py users add NAME --admin)")
    for r in rows:
        print(f"{r['name']:<24} {r['role']:<6} keys={r['api_keys']}  since {r['created_at']}")
    return 0


def users_passwd(cfg: Config, args) -> int:
    store = _store(cfg)
    if auth.get_user(store, args.name) is None:
        raise NotFound(f"no user {args.name!r}")
    auth.set_password(store, args.name, read_password(args.password))
    print(f"password of {args.name} changed")
    return 0


def users_role(cfg: Config, args) -> int:
    auth.set_role(_store(cfg), args.name, args.role)
    print(f"{args.name} is now {args.role}")
    return 0


def users_key(cfg: Config, args) -> int:
    if args.revoke:
        store = _store(cfg)
        if auth.get_user(store, args.name) is None:  # a typo must not look like a revoked key
                raise NotFound(f"no user {args.name!r}")
        print(f"revoked {auth.revoke_api_keys(store, args.name)} key(s) of {args.name}")
        return 0
    print(auth.create_api_key(_store(cfg), args.name))
    return 0


def users_forget(cfg: Config, args) -> int:
    out = forget_user(_store(cfg), cfg, args.name, requested_by=None,
                      retrain=not args.no_retrain)
    if args.json:
        print(json.dumps(out.as_dict()))
        return 0
    rows = ", ".join(f"{n} {t}" for t, n in out.deleted.items() if n)
    print(f"forgot {out.user}: deleted {rows}")
    if out.versions_retired:
        print(f"adapters holding their feedback, never served again: "
              f"{', '.join(out.versions_retired)}")
    if out.served_before != out.served_now:
        print(f"now serving {out.served_now or 'the base model'} "
              f"(was {out.served_before})")
    if out.run_cancelled:
        print(f"cancelled training run {out.run_cancelled}: it read their feedback")
    if out.run_queued:
        print(f"queued training run {out.run_queued} on the remaining feedback")
    elif out.retrain_note:
        print(f"no retraining run queued: {out.retrain_note}")
    if not out.wal_truncated:
        print("the write-ahead log was busy; its old pages are cleared at the next checkpoint")
    return 0
