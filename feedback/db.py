"""The SQLite file under every store: migrations on open, WAL, one connection per thread and
one short BEGIN IMMEDIATE transaction per write. No table's SQL lives here: each table family's
owner module writes its own (see tests/test_table_owners.py)."""

from __future__ import annotations

import fcntl
import json
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from chat.errors import BadInput
from feedback.migrations import migrations, table_counts


class FairLock:
    """A re-entrant lock handed to waiters in arrival order (threading.Lock lets some starve)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._waiters: deque[tuple[int, threading.Lock]] = deque()
        self._owner: int | None = None
        self._depth = 0

    def __enter__(self) -> FairLock:
        me = threading.get_ident()
        with self._guard:
            if self._owner in (None, me):
                self._owner, self._depth = me, self._depth + 1
                return self
            baton = threading.Lock()
            baton.acquire()
            self._waiters.append((me, baton))
        baton.acquire()  # released by the previous owner, who made us the owner
        return self

    def __exit__(self, *exc) -> None:
        with self._guard:
            self._depth -= 1
            if self._depth:
                return
            if self._waiters:
                self._owner, baton = self._waiters.popleft()
                self._depth = 1
                baton.release()
            else:
                self._owner = None


CHECKPOINT_EVERY = 256  # commits between WAL checkpoints (run outside the write lock)


class _Shared:
    """Per database file in this process: the write queue and the checkpoint bookkeeping.

    Writers queue on a FairLock and are handed it at once, instead of polling SQLite's busy
    handler (which sleeps up to 100 ms between tries); busy_timeout still arbitrates between
    processes. SQLite's automatic checkpoint would run inside a commit, i.e. while every other
    writer waits, and retry on each commit while readers pin the WAL: we run it ourselves,
    after the commit and outside the lock.
    """

    def __init__(self) -> None:
        self.write_lock = FairLock()
        self.commits = 0
        self.checkpointing = threading.Lock()


_SHARED: dict[str, _Shared] = {}
_SHARED_GUARD = threading.Lock()


def _shared(path: Path) -> _Shared:
    with _SHARED_GUARD:
        return _SHARED.setdefault(str(path.resolve()), _Shared())


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (POSIX advisory lock on a side file)."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def decoded(row: dict | None, *columns: str) -> dict | None:
    """A copy of `row` with each `X_json` column parsed into `X` (None stays None)."""
    if row is None:
        return None
    row = dict(row)
    for column in columns:
        row[column.removesuffix("_json")] = json.loads(row.pop(column) or "{}")
    return row


class DatabaseFile:
    """Owns the database file. One connection per thread; every write is its own transaction."""

    def __init__(self, path: Path | str, busy_timeout_ms: int = 30_000):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._shared = _shared(self.path)
        with self._shared.write_lock, _file_lock(self.path.with_name(self.path.name + ".lock")):
            migrations.apply(self.db)  # processes opening a new file at once take turns

    # ------------------------------------------------------------------ connections

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the lock
        # up front and waits on busy_timeout instead of failing on upgrade ("database is locked").
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a commit survives power loss, not just a crash
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA secure_delete=ON")  # deleted rows are zeroed, not left readable
        conn.execute("PRAGMA wal_autocheckpoint=0")  # see _Shared
        return conn

    @property
    def db(self) -> Database:
        db = getattr(self._local, "db", None)
        if db is None:
            db = Database(self._connect())
            self._local.db = db
        return db

    @contextmanager
    def write(self) -> Iterator[Database]:
        """One short write transaction; committed (durable in WAL) when the block exits."""
        db = self.db
        shared = self._shared
        with shared.write_lock:
            db.conn.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except UnicodeEncodeError:  # sqlite cannot bind text with an unpaired surrogate
                db.conn.execute("ROLLBACK")
                raise BadInput("the text is not valid Unicode (an unpaired surrogate)") from None
            except BaseException:
                db.conn.execute("ROLLBACK")
                raise
            db.conn.execute("COMMIT")
            shared.commits += 1
            due = shared.commits % CHECKPOINT_EVERY == 0
        if due:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Copy the WAL into the database (PASSIVE: never blocks readers or writers)."""
        if self._shared.checkpointing.acquire(blocking=False):  # one at a time is enough
            try:
                self.db.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                self._shared.checkpointing.release()

    def scrub(self, tries: int = 20) -> bool:
        """After deleting what must not be read again: copy the WAL into the file and empty
        it (deleted rows are zeroed in the file by secure_delete; the WAL still holds their
        old pages). False when readers kept it busy through every try."""
        for _ in range(tries):
            with self._shared.write_lock:
                busy = self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if not busy:
                return True
            time.sleep(0.1)
        return False

    def query(self, sql: str, params: tuple | list | dict = ()) -> list[dict]:
        return [dict(r) for r in self.db.query(sql, params)]

    def one(self, sql: str, params: tuple | list | dict = ()) -> dict | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def counts(self) -> dict[str, int]:
        """Rows per table, every family's: a diagnostic (did a refused write leave nothing?)."""
        return table_counts(self.db)
