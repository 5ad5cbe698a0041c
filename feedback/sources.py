"""Source feedback: "helped" (+1) or "not relevant" (-1) on a chunk an answer cited, or imported
with its query. The one module that writes `source_feedback`; it reads answers and ratings too,
because a thumbs-down blaming the sources speaks for the sources nobody marked."""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlite_utils import Database

from chat.errors import BadInput
from feedback.store import RATING_REASONS, Store, utcnow

BLAMES_SOURCES = [r for r, part in RATING_REASONS.items() if part == "retrieval"]
VALUES = {1: "helped", -1: "not relevant"}


@dataclass(frozen=True)
class SourceMark:
    """One (query, chunk, value) the retriever learns from; `implicit` when it came from a
    thumbs-down with a source reason rather than a mark on the source itself."""
    key: str  # "s12" (a source_feedback row) or "r7:431" (rating 7, chunk 431)
    user: str
    query: str
    chunk_id: int
    value: int
    implicit: bool = False


def check_value(value) -> int:
    if isinstance(value, bool) or value not in VALUES:
        raise BadInput('source feedback "value" must be 1 (helped) or -1 (not relevant)')
    return int(value)


def check_chunk_id(chunk_id) -> int:
    if isinstance(chunk_id, bool) or not isinstance(chunk_id, int) or chunk_id < 1:
        raise BadInput('"chunk_id" must be a positive integer')
    return chunk_id


def check_chunks_exist(store: Store, chunk_ids: list[int]) -> None:
    """Imported marks must name chunks of this knowledge base (`documents list`)."""
    known = {r["id"] for r in store.query("SELECT id FROM chunks")} if chunk_ids else set()
    missing = sorted(set(chunk_ids) - known)
    if missing:
        raise BadInput(f"no chunk {', '.join(map(str, missing[:10]))} in the knowledge base; "
                       "source feedback must name chunks that exist (an answer's sources show "
                       "their chunk_id)")


def cited_chunks(message: dict) -> list[int]:
    """The chunk ids an answer recorded as its sources, in the order shown."""
    return [s["chunk_id"] for s in json.loads(message.get("sources_json") or "[]")]


def add(db: Database, user: str, query: str, chunk_id: int, value: int,
        message_id: int | None = None, now: str | None = None) -> int:
    """Inside the caller's write transaction (an import's batch, or record below)."""
    if message_id is not None:  # a user's second mark on a source replaces the first
        db.conn.execute("DELETE FROM source_feedback WHERE message_id = ? AND chunk_id = ? "
                        "AND user = ?", (message_id, chunk_id, user))
    cur = db.conn.execute(
        "INSERT INTO source_feedback (user, query, chunk_id, value, message_id, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?)", (user, query, chunk_id, value, message_id, now or utcnow()))
    return cur.lastrowid


def record(store: Store, user: str, message: dict, chunk_id, value) -> int:
    """A mark on one source of `message` (an answer the caller has checked is the user's)."""
    value, chunk_id = check_value(value), check_chunk_id(chunk_id)
    if chunk_id not in cited_chunks(message):
        raise BadInput(f"chunk {chunk_id} is not one of the sources of message {message['id']}")
    question = store.message(message["parent_id"])["content"] if message["parent_id"] else ""
    if not question.strip():
        raise BadInput(f"message {message['id']} has no question to learn retrieval from")
    with store.write() as db:
        return add(db, user, question, chunk_id, value, message["id"])


def marks_on(store: Store, message_id: int, user: str) -> dict[int, int]:
    """chunk id -> the user's mark on that source of one answer."""
    return {r["chunk_id"]: r["value"] for r in store.query(
        "SELECT chunk_id, value FROM source_feedback WHERE message_id = ? AND user = ? "
        "ORDER BY id", (message_id, user))}


def erase_user(db: Database, user: str) -> list[str]:
    """Inside forget's transaction, before the user's messages go: their marks, and marks
    anyone left on their answers (they quote the user's question). Returns the marks' keys."""
    where = ("user = :u OR message_id IN (SELECT m.id FROM messages m JOIN conversations c "
             "ON c.id = m.conversation_id WHERE c.user = :u)")
    keys = [f"s{r[0]}" for r in db.conn.execute(
        f"SELECT id FROM source_feedback WHERE {where}", {"u": user})]
    db.conn.execute(f"DELETE FROM source_feedback WHERE {where}", {"u": user})
    return keys


def training_marks(store: Store) -> list[SourceMark]:
    """Every explicit mark, plus "not relevant" for each source of an answer rated down for
    its sources, unless that user marked that source of that answer themselves."""
    rows = store.query("SELECT * FROM source_feedback ORDER BY id")
    marks = [SourceMark(f"s{r['id']}", r["user"], r["query"], r["chunk_id"], r["value"])
             for r in rows]
    marked = {(r["message_id"], r["user"], r["chunk_id"]) for r in rows
              if r["message_id"] is not None}
    blamed = store.query(
        "SELECT r.id, r.user, r.message_id, a.sources_json, q.content AS query FROM ratings r "
        "JOIN messages a ON a.id = r.message_id JOIN messages q ON q.id = a.parent_id "
        f"WHERE r.value = -1 AND r.reason IN ({','.join('?' * len(BLAMES_SOURCES))}) "
        "ORDER BY r.id", BLAMES_SOURCES)
    for r in blamed:
        for chunk_id in cited_chunks(r):
            if (r["message_id"], r["user"], chunk_id) not in marked and r["query"].strip():
                marks.append(SourceMark(f"r{r['id']}:{chunk_id}", r["user"], r["query"],
                                        chunk_id, -1, implicit=True))
    return marks


def by_document(store: Store) -> list[dict]:
    """Source feedback per document, the most often "not relevant" first (chunks since
    deleted count under "(deleted)")."""
    titles = {r["id"]: r["title"] or r["path"] for r in store.query(
        "SELECT c.id, d.title, d.path FROM chunks c JOIN documents d ON d.id = c.document_id")}
    out: dict[str, dict] = {}
    for m in training_marks(store):
        doc = out.setdefault(titles.get(m.chunk_id, "(deleted)"),
                             {"helped": 0, "not_relevant": 0, "implied_by_thumbs_down": 0})
        doc["helped" if m.value == 1 else "not_relevant"] += 1
        doc["implied_by_thumbs_down"] += m.implicit
    return sorted(({"document": d, **c} for d, c in out.items()),
                  key=lambda d: (-d["not_relevant"], d["document"]))
