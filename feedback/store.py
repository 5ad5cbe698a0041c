"""The SQLite store: migrations on open, WAL, one short BEGIN IMMEDIATE transaction per write."""

from __future__ import annotations

import fcntl
import json
import sqlite3
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from chat.errors import BadInput, NotFound
from feedback.migrations import migrations

RATING_REASONS = {
    # reason -> which part of the system it blames
    "wrong or missing source": "retrieval",
    "wrong facts": "generation",
    "not helpful": "generation",
    "too long": "generation",
    "unsafe": "generation",
    "other": "other",
}


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


def same_answer(first: str, second: str) -> bool:
    """The same words, surrounding whitespace aside: nothing to prefer between them."""
    return first.strip() == second.strip()


def check_pair(first: str, second: str) -> None:
    """Two answers that can make a preference pair: both written, and not the same text."""
    if not first.strip() or not second.strip():
        raise BadInput("chosen and rejected answers must not be empty")
    if same_answer(first, second):
        raise BadInput("the two answers are the same text: there is nothing to prefer")


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


class Store:
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

    def query(self, sql: str, params: tuple | list | dict = ()) -> list[dict]:
        return [dict(r) for r in self.db.query(sql, params)]

    def one(self, sql: str, params: tuple | list | dict = ()) -> dict | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def _insert(self, db: Database, table: str, row: dict) -> int:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        cur = db.conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values()))
        return cur.lastrowid

    # ------------------------------------------------------------------ conversations

    def create_conversation(self, user: str, title: str | None = None) -> int:
        with self.write() as db:
            return self._insert(
                db, "conversations", {"user": user, "created_at": utcnow(), "title": title}
            )

    def conversation(self, conversation_id: int, user: str | None = None) -> dict:
        """A conversation row; with `user`, only if it belongs to that user."""
        row = self.one("SELECT * FROM conversations WHERE id = ?", (conversation_id,))
        if row is None or (user is not None and row["user"] != user):
            raise NotFound(f"no conversation {conversation_id}")
        return row

    def conversations(self, user: str, limit: int = 50) -> list[dict]:
        return self.query(
            "SELECT * FROM conversations WHERE user = ? ORDER BY id DESC LIMIT ?", (user, limit)
        )

    def messages(self, conversation_id: int) -> list[dict]:
        return self.query(
            "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)
        )

    def message(self, message_id: int) -> dict:
        row = self.one("SELECT * FROM messages WHERE id = ?", (message_id,))
        if row is None:
            raise NotFound(f"no message {message_id}")
        return row

    def record_message(
        self, conversation_id: int, role: str, content: str, *, parent_id: int | None = None,
        adapter_version: str | None = None, prompt_version: int | None = None,
        sources: list | None = None, params: dict | None = None, prompt: list | None = None,
    ) -> int:
        row = {
            "conversation_id": conversation_id, "parent_id": parent_id, "role": role,
            "content": content, "adapter_version": adapter_version,
            "prompt_version": prompt_version,
            "sources_json": dumps(sources) if sources is not None else None,
            "params_json": dumps(params) if params is not None else None,
            "prompt_json": dumps(prompt) if prompt is not None else None,
            "created_at": utcnow(),
        }
        with self.write() as db:
            return self._insert(db, "messages", row)

    # ------------------------------------------------------------------ feedback verbs

    def _assistant_message(self, message_id: int) -> dict:
        msg = self.message(message_id)
        if msg["role"] != "assistant":
            raise BadInput(f"message {message_id} is not an assistant answer")
        return msg

    def record_rating(
        self, message_id: int, user: str, value: int, reason: str | None = None,
        comment: str | None = None,
    ) -> int:
        """Thumbs up (+1) or down (-1); a second rating by the same user replaces the first."""
        if value not in (1, -1):
            raise BadInput("rating value must be 1 or -1")
        if reason is not None and reason not in RATING_REASONS:
            raise BadInput(f"unknown reason {reason!r}; choose one of {sorted(RATING_REASONS)}")
        self._assistant_message(message_id)
        row = {"message_id": message_id, "user": user, "value": value, "reason": reason,
               "comment": comment, "created_at": utcnow()}
        with self.write() as db:
            return db.conn.execute(
                "INSERT INTO ratings (message_id, user, value, reason, comment, created_at) "
                "VALUES (:message_id, :user, :value, :reason, :comment, :created_at) "
                "ON CONFLICT (message_id, user) DO UPDATE SET value = excluded.value, "
                "reason = excluded.reason, comment = excluded.comment, "
                "created_at = excluded.created_at RETURNING id", row,
            ).fetchall()[0][0]  # fetchall: the statement must finish before COMMIT

    def record_correction(self, message_id: int, user: str, content: str) -> int:
        """An edited answer: stored, and as a preference (corrected > original)."""
        msg = self._assistant_message(message_id)
        content = (content or "").strip()
        if not content:
            raise BadInput("a correction cannot be empty")
        if same_answer(content, msg["content"]):
            raise BadInput("the correction is the same as the original answer")
        now = utcnow()
        with self.write() as db:
            cid = self._insert(db, "corrections", {
                "message_id": message_id, "user": user, "content": content, "created_at": now})
            self._insert(db, "preferences", {
                "prompt_json": msg["prompt_json"] or "[]", "chosen": content,
                "rejected": msg["content"], "source": "correction", "user": user,
                "message_id": message_id, "adapter_version": msg["adapter_version"],
                "prompt_version": msg["prompt_version"], "created_at": now})
            return cid

    def record_preference(
        self, prompt: list | str, chosen: str, rejected: str, user: str, source: str = "compare",
        message_id: int | None = None, adapter_version: str | None = None,
        prompt_version: int | None = None,
    ) -> int:
        check_pair(chosen, rejected)
        with self.write() as db:
            return self._insert(db, "preferences", {
                "prompt_json": dumps(prompt), "chosen": chosen, "rejected": rejected,
                "source": source, "user": user, "message_id": message_id,
                "adapter_version": adapter_version, "prompt_version": prompt_version,
                "created_at": utcnow()})

    def record_comparison(
        self, prompt: list, answer_a: str, answer_b: str, choice: str, user: str,
        adapter_a: str | None = None, adapter_b: str | None = None,
        prompt_version: int | None = None,
    ) -> int:
        """A side-by-side pick; 'a' or 'b' also becomes a preference pair."""
        if choice not in ("a", "b", "tie", "both_bad"):
            raise BadInput("choice must be one of a, b, tie, both_bad")
        if choice in ("a", "b"):  # the pick becomes a preference pair
            check_pair(answer_a, answer_b)
        now = utcnow()
        with self.write() as db:
            pref_id = None
            if choice in ("a", "b"):
                chosen, rejected = (answer_a, answer_b) if choice == "a" else (answer_b, answer_a)
                pref_id = self._insert(db, "preferences", {
                    "prompt_json": dumps(prompt), "chosen": chosen, "rejected": rejected,
                    "source": "compare", "user": user,
                    "adapter_version": adapter_a if choice == "a" else adapter_b,
                    "prompt_version": prompt_version, "created_at": now})
            return self._insert(db, "comparisons", {
                "prompt_json": dumps(prompt), "answer_a": answer_a, "answer_b": answer_b,
                "adapter_a": adapter_a, "adapter_b": adapter_b, "choice": choice, "user": user,
                "preference_id": pref_id, "created_at": now})

    def counts(self) -> dict[str, int]:
        tables = ["conversations", "messages", "ratings", "corrections", "preferences",
                  "comparisons", "documents", "chunks", "adapters", "training_runs"]
        return {t: self.db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def open_store(cfg) -> Store:
    return Store(cfg.db_path)
