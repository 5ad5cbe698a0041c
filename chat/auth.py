"""Accounts, passwords, API keys and roles; every admin action asks the Authorizer server-side."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from chat.config import Config
from chat.errors import BadInput, Forbidden, NotFound
from feedback.store import Store, utcnow

ROLES = ("user", "admin")
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024  # scrypt cost is per byte of input too: bound it
KEY_PREFIX = "lc-"
OPEN_USER = "local"  # the one identity of open single-user mode (the local operator)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")

# scrypt parameters (RFC 7914 interactive-login level): ~16 MiB and tens of ms per check.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


# ---------------------------------------------------------------------------- hashing


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# checked for unknown names, so a login takes as long whether the name exists or not
_DUMMY_HASH = f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(bytes(16))}${_b64(bytes(32))}"


def hash_password(password: str) -> str:
    """A salted scrypt hash as `scrypt$N$r$p$salt$hash` (parameters kept for future upgrades)."""
    check_password_rules(password)
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P,
                            dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def check_hash(password: str, encoded: str | None) -> bool:
    """True if `password` matches the stored hash; constant-time compare."""
    if not encoded or not password or len(password) > MAX_PASSWORD_CHARS:
        return False
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                             r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def hash_key(key: str) -> str:
    # API keys carry 256 random bits, so a fast hash is enough (and lets us look them up).
    return hashlib.sha256(key.encode()).hexdigest()


def check_password_rules(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise BadInput(f"the password is too short (at least {MIN_PASSWORD_CHARS} characters)")
    if len(password) > MAX_PASSWORD_CHARS:
        raise BadInput(f"the password is too long (at most {MAX_PASSWORD_CHARS} characters)")


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not _NAME.fullmatch(name):
        raise BadInput(f"invalid user name {name!r}: use 1-64 letters, digits, _ . @ - "
                       "(starting with a letter or digit)")
    if name == OPEN_USER:  # open mode's operator has no account: one would change its rights
        raise BadInput(f"the user name {OPEN_USER!r} is reserved for the local operator")
    return name


# ---------------------------------------------------------------------------- accounts


def get_user(store: Store, name: str | None) -> dict | None:
    """The user row (without the hash), or None."""
    if not name:
        return None
    return store.one("SELECT name, role, created_at FROM users WHERE name = ?", (name,))


def add_user(store: Store, name: str, password: str, role: str = "user") -> dict:
    """Create an account; BadInput if the name is taken or invalid."""
    name = check_name(name)
    if role not in ROLES:
        raise BadInput(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    password_hash = hash_password(password)
    with store.write() as db:
        if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
            raise BadInput(f"user {name!r} already exists (use `users passwd` to change the "
                           "password)")
        db.execute("INSERT INTO users (name, role, password_hash, created_at) VALUES (?,?,?,?)",
                   (name, role, password_hash, utcnow()))
    return get_user(store, name)


def set_password(store: Store, name: str, password: str) -> None:
    """Replace a user's password hash."""
    password_hash = hash_password(password)
    with store.write() as db:
        cur = db.execute("UPDATE users SET password_hash = ? WHERE name = ?",
                         (password_hash, name))
        if cur.rowcount == 0:
            raise NotFound(f"no user {name!r}")


def set_role(store: Store, name: str, role: str) -> None:
    if role not in ROLES:
        raise BadInput(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    with store.write() as db:
        if db.execute("UPDATE users SET role = ? WHERE name = ?", (role, name)).rowcount == 0:
            raise NotFound(f"no user {name!r}")


def verify_password(store: Store, name: str, password: str) -> bool:
    """True only for an existing user with that password (the web login calls this)."""
    row = store.one("SELECT password_hash FROM users WHERE name = ?", (name or "",))
    matches = check_hash(password, row["password_hash"] if row else _DUMMY_HASH)
    return row is not None and matches


def list_users(store: Store) -> list[dict]:
    """Every account with its role and number of API keys (never the hashes)."""
    return store.query(
        "SELECT u.name, u.role, u.created_at, count(k.key_hash) AS api_keys FROM users u "
        "LEFT JOIN api_keys k ON k.user = u.name GROUP BY u.name ORDER BY u.name")


def count_users(store: Store, role: str | None = None) -> int:
    if role is None:
        return store.db.execute("SELECT count(*) FROM users").fetchone()[0]
    return store.db.execute("SELECT count(*) FROM users WHERE role = ?", (role,)).fetchone()[0]


def erase_account(db, name: str) -> dict[str, int]:
    """Inside the caller's write transaction: the account and its API keys; rows deleted."""
    return {"api_keys": db.execute("DELETE FROM api_keys WHERE user = ?", (name,)).rowcount,
            "users": db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount}


# ---------------------------------------------------------------------------- API keys


def create_api_key(store: Store, name: str) -> str:
    """A new API key for `name`; only its hash is stored, so it is shown once."""
    if get_user(store, name) is None:
        raise NotFound(f"no user {name!r} (add it first with `users add`)")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with store.write() as db:
        db.execute("INSERT INTO api_keys (key_hash, user, created_at) VALUES (?, ?, ?)",
                   (hash_key(key), name, utcnow()))
    return key


def revoke_api_keys(store: Store, name: str) -> int:
    """Delete every API key of `name`; returns how many."""
    with store.write() as db:
        return db.execute("DELETE FROM api_keys WHERE user = ?", (name,)).rowcount


def user_for_key(store: Store, key: str | None) -> str | None:
    """The user an API key belongs to, or None for a missing or unknown key."""
    if not key or not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    row = store.one("SELECT user FROM api_keys WHERE key_hash = ?", (hash_key(key),))
    return row["user"] if row else None


# ---------------------------------------------------------------------------- roles


class Authorizer:
    """Who may do what, decided once from the configuration; the web app, the API and the CLI
    all ask this one object, so there is one rule per mode.

    In open mode (the explicit single-user mode, served on localhost only) the local operator,
    who has no account, owns everything, so its checks pass; a caller that is an account (an
    API key's owner) is held to its role in either mode.
    """

    def __init__(self, cfg: Config, store: Store):
        self.open = cfg.auth == "open"
        self.store = store

    def require(self, user: str | None, role: str = "user") -> str:
        """The caller's name, or Forbidden unless `user` has `role` (admins pass every check)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        row = get_user(self.store, user)
        if row is None and self.open:
            return user or OPEN_USER
        if row is None:
            raise Forbidden("log in first: this action needs an account"
                            + (" with the admin role" if role == "admin" else ""))
        if role == "admin" and row["role"] != "admin":
            raise Forbidden(f"user {user!r} may not do this: it needs the admin role")
        return row["name"]

    def is_admin(self, user: str | None) -> bool:
        try:
            self.require(user, "admin")
        except Forbidden:
            return False
        return True

    def web_user(self, request) -> str:
        """Who is calling the web app: the login name, or in open mode the local operator.
        Never taken from session state, which a client can address by its hash."""
        if self.open:
            return OPEN_USER
        name = request.username if request is not None else None
        if not name:
            raise Forbidden("log in first")
        return name


def check_auth_mode(cfg, host: str, store: Store | None = None) -> None:
    """Refuse open mode off loopback, and accounts mode without accounts (an unknown mode is
    refused when the configuration is read)."""
    if cfg.auth == "open" and host not in ("127.0.0.1", "localhost", "::1"):
        raise BadInput(f"open single-user mode only serves on localhost, not {host!r}; set "
                       "CHAT_AUTH=accounts and add users with `launch.py users add NAME`")
    if cfg.auth == "accounts" and store is not None and count_users(store) == 0:
        raise BadInput("CHAT_AUTH=accounts but there are no accounts yet: add one with "
                       "`launch.py users add NAME --admin`")
