"""Conversations, messages and feedback: the one module that writes their tables. Connections
and transactions: feedback/db.py; the read side for counts and exports: stats.py, export.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlite_utils import Database

from chat.errors import BadInput, NotFound
from feedback.checks import RATING_REASONS, check_pair, checked_title, same_answer
from feedback.db import CHECKPOINT_EVERY, DatabaseFile, decoded, dumps, utcnow

# utcnow, dumps, decoded and CHECKPOINT_EVERY live in feedback.db, the answer checks in
# feedback.checks; callers import them here
__all__ = ["CHECKPOINT_EVERY", "RATING_REASONS", "Erased", "Rows", "Store", "check_pair",
           "decoded", "dumps", "erase_user_rows", "open_store", "same_answer", "utcnow"]

def _insert(db: Database, table: str, row: dict) -> int:
    cols, marks = ", ".join(row), ", ".join("?" for _ in row)
    cur = db.conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values()))
    return cur.lastrowid


class Rows:
    """The feedback inserts, each written once, inside a write transaction the caller holds:
    Store's verbs open one per call, Store.batch() one for many. Callers validate first."""

    def __init__(self, db: Database, now: str):
        self.db, self.now = db, now

    def conversation(self, user: str, title: str | None = None) -> int:
        return _insert(self.db, "conversations",
                       {"user": user, "created_at": self.now, "title": title})

    def message(
        self, conversation_id: int, role: str, content: str, *, parent_id: int | None = None,
        adapter_version: str | None = None, prompt_version: int | None = None,
        sources: list | None = None, params: dict | None = None, prompt: list | None = None,
        retriever_version: str | None = None,
    ) -> int:
        return _insert(self.db, "messages", {
            "conversation_id": conversation_id, "parent_id": parent_id, "role": role,
            "content": content, "adapter_version": adapter_version,
            "prompt_version": prompt_version, "retriever_version": retriever_version,
            "sources_json": dumps(sources) if sources is not None else None,
            "params_json": dumps(params) if params is not None else None,
            "prompt_json": dumps(prompt) if prompt is not None else None,
            "created_at": self.now})

    def rating(self, message_id: int, user: str, value: int, reason: str | None = None,
               comment: str | None = None) -> int:
        """A second rating by the same user replaces the first."""
        row = {"message_id": message_id, "user": user, "value": value, "reason": reason,
               "comment": comment, "created_at": self.now}
        return self.db.conn.execute(
            "INSERT INTO ratings (message_id, user, value, reason, comment, created_at) "
            "VALUES (:message_id, :user, :value, :reason, :comment, :created_at) "
            "ON CONFLICT (message_id, user) DO UPDATE SET value = excluded.value, "
            "reason = excluded.reason, comment = excluded.comment, "
            "created_at = excluded.created_at RETURNING id", row,
        ).fetchall()[0][0]  # fetchall: the statement must finish before COMMIT

    def preference(
        self, prompt_json: str, chosen: str, rejected: str, source: str, user: str, *,
        message_id: int | None = None, adapter_version: str | None = None,
        prompt_version: int | None = None,
    ) -> int:
        return _insert(self.db, "preferences", {
            "prompt_json": prompt_json, "chosen": chosen, "rejected": rejected,
            "source": source, "user": user, "message_id": message_id,
            "adapter_version": adapter_version, "prompt_version": prompt_version,
            "created_at": self.now})

    def correction(
        self, message_id: int, user: str, content: str, *, original: str, prompt_json: str,
        adapter_version: str | None, prompt_version: int | None = None,
    ) -> int:
        """An edited answer, and the preference pair it makes (corrected > original)."""
        cid = _insert(self.db, "corrections", {
            "message_id": message_id, "user": user, "content": content,
            "created_at": self.now})
        self.preference(prompt_json, content, original, "correction", user,
                        message_id=message_id, adapter_version=adapter_version,
                        prompt_version=prompt_version)
        return cid

    def comparison(
        self, prompt: list, answer_a: str, answer_b: str, choice: str, user: str,
        adapter_a: str | None = None, adapter_b: str | None = None,
        prompt_version: int | None = None,
    ) -> int:
        """A side-by-side pick; 'a' or 'b' also becomes a preference pair."""
        pref_id = None
        if choice in ("a", "b"):
            chosen, rejected = (answer_a, answer_b) if choice == "a" else (answer_b, answer_a)
            pref_id = self.preference(
                dumps(prompt), chosen, rejected, "compare", user,
                adapter_version=adapter_a if choice == "a" else adapter_b,
                prompt_version=prompt_version)
        return _insert(self.db, "comparisons", {
            "prompt_json": dumps(prompt), "answer_a": answer_a, "answer_b": answer_b,
            "adapter_a": adapter_a, "adapter_b": adapter_b, "choice": choice, "user": user,
            "preference_id": pref_id, "created_at": self.now})


@dataclass
class Erased:
    """What erase_user_rows deleted: rows per table, and the ids of the preferences and
    ratings among them (training records which of those trained an adapter)."""
    counts: dict[str, int]
    preference_ids: list[int]
    rating_ids: list[int]


def erase_user_rows(db: Database, user: str) -> Erased:
    """Inside the caller's write transaction: every conversation, message and feedback row of
    `user`, and the feedback anyone left on that user's answers (it quotes them)."""
    conv = "SELECT id FROM conversations WHERE user = :u"
    msgs = f"SELECT id FROM messages WHERE conversation_id IN ({conv})"
    prefs = f"SELECT id FROM preferences WHERE user = :u OR message_id IN ({msgs})"
    where = {
        "comparisons": f"user = :u OR preference_id IN ({prefs})",
        "preferences": f"id IN ({prefs})",
        "corrections": f"user = :u OR message_id IN ({msgs})",
        "ratings": f"user = :u OR message_id IN ({msgs})",
        "messages": f"id IN ({msgs})",
        "conversations": "user = :u",
    }
    ids = {t: [r[0] for r in db.conn.execute(f"SELECT id FROM {t} WHERE {where[t]}",
                                             {"u": user})]
           for t in ("preferences", "ratings")}
    counts = {t: db.conn.execute(f"DELETE FROM {t} WHERE {cond}", {"u": user}).rowcount
              for t, cond in where.items()}  # children first: foreign keys hold throughout
    return Erased(counts, ids["preferences"], ids["ratings"])


class Store(DatabaseFile):
    """The database file, with the verbs and reads of conversations, messages and feedback."""

    @contextmanager
    def batch(self) -> Iterator[Rows]:
        """Many feedback rows in ONE write transaction: all of them are stored, or none."""
        with self.write() as db:
            yield Rows(db, utcnow())

    # ------------------------------------------------------------------ conversations

    def create_conversation(self, user: str, title: str | None = None) -> int:
        with self.batch() as rows:
            return rows.conversation(user, title)

    def conversation(self, conversation_id: int, user: str | None = None) -> dict:
        """A conversation row; with `user`, only if it belongs to that user and they have not
        deleted it."""
        row = self.one("SELECT * FROM conversations WHERE id = ?", (conversation_id,))
        if row is None or (user is not None and (row["user"] != user or row["hidden_at"])):
            raise NotFound(f"no conversation {conversation_id}")
        return row

    def conversations(self, user: str, limit: int = 100) -> list[dict]:
        """The user's conversations, the one with the latest message first (`active_at`)."""
        return self.query(
            "SELECT c.*, COALESCE(MAX(m.created_at), c.created_at) AS active_at "
            "FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id "
            "WHERE c.user = ? AND c.hidden_at IS NULL GROUP BY c.id "
            "ORDER BY active_at DESC, c.id DESC LIMIT ?", (user, limit))

    def rename_conversation(self, conversation_id: int, user: str, title: str) -> None:
        self._set_own_conversation(conversation_id, user, "title", checked_title(title))

    def hide_conversation(self, conversation_id: int, user: str) -> None:
        """Deleted from the user's list; its messages and feedback stay (training may have
        used them: only forgetting the user erases them, see chat/forget.py)."""
        self._set_own_conversation(conversation_id, user, "hidden_at", utcnow())

    def _set_own_conversation(self, conversation_id: int, user: str, column: str,
                              value: str) -> None:
        with self.write() as db:  # checked and changed in one statement: no race with a delete
            if not db.conn.execute(
                    f"UPDATE conversations SET {column} = ? WHERE id = ? AND user = ? "
                    "AND hidden_at IS NULL", (value, conversation_id, user)).rowcount:
                raise NotFound(f"no conversation {conversation_id}")

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
        retriever_version: str | None = None,
    ) -> int:
        with self.batch() as rows:
            return rows.message(
                conversation_id, role, content, parent_id=parent_id,
                adapter_version=adapter_version, prompt_version=prompt_version,
                sources=sources, params=params, prompt=prompt,
                retriever_version=retriever_version)

    def ratings_by(self, user: str) -> dict[int, int]:
        """message id -> the user's thumbs (+1 / -1)."""
        return {r["message_id"]: r["value"] for r in self.query(
            "SELECT message_id, value FROM ratings WHERE user = ?", (user,))}

    def latest_corrections(self, conversation_id: int, user: str) -> dict[int, str]:
        """message id -> the user's latest correction of that answer, in one conversation."""
        return {r["message_id"]: r["content"] for r in self.query(  # later rows win
            "SELECT c.message_id, c.content FROM corrections c JOIN messages m "
            "ON m.id = c.message_id WHERE m.conversation_id = ? AND c.user = ? ORDER BY c.id",
            (conversation_id, user))}

    def answer_prompts(self, limit: int) -> list[str]:
        """prompt_json of the latest answers that recorded the prompt they saw, newest first."""
        return [r["prompt_json"] for r in self.query(
            "SELECT prompt_json FROM messages WHERE role = 'assistant' AND "
            "prompt_json IS NOT NULL ORDER BY id DESC LIMIT ?", (limit,))]

    def preference_prompts(self, limit: int) -> list[str]:
        """prompt_json of the latest preference pairs, newest first."""
        return [r["prompt_json"] for r in self.query(
            "SELECT prompt_json FROM preferences ORDER BY id DESC LIMIT ?", (limit,))]

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
        with self.batch() as rows:
            return rows.rating(message_id, user, value, reason, comment)

    def record_correction(self, message_id: int, user: str, content: str) -> int:
        """An edited answer: stored, and as a preference (corrected > original)."""
        msg = self._assistant_message(message_id)
        content = (content or "").strip()
        if not content:
            raise BadInput("a correction cannot be empty")
        if same_answer(content, msg["content"]):
            raise BadInput("the correction is the same as the original answer")
        with self.batch() as rows:
            return rows.correction(
                message_id, user, content, original=msg["content"],
                prompt_json=msg["prompt_json"] or "[]", adapter_version=msg["adapter_version"],
                prompt_version=msg["prompt_version"])

    def record_preference(
        self, prompt: list | str, chosen: str, rejected: str, user: str, source: str = "compare",
        message_id: int | None = None, adapter_version: str | None = None,
        prompt_version: int | None = None,
    ) -> int:
        check_pair(chosen, rejected)
        with self.batch() as rows:
            return rows.preference(dumps(prompt), chosen, rejected, source, user,
                                   message_id=message_id, adapter_version=adapter_version,
                                   prompt_version=prompt_version)

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
        with self.batch() as rows:
            return rows.comparison(prompt, answer_a, answer_b, choice, user, adapter_a,
                                   adapter_b, prompt_version)


def open_store(cfg) -> Store:
    return Store(cfg.db_path)
