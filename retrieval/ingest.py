"""Documents in: read, parse, chunk, embed; then one transaction per document in SQLite."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chat.config import Config
from chat.errors import BadInput, NotFound
from feedback.store import Store, utcnow
from retrieval.chunking import chunk_text
from retrieval.embed import Embedder
from retrieval.parse import parse, read_bytes, sha256


@dataclass
class IngestReport:
    documents_added: int = 0
    chunks_added: int = 0
    skipped: int = 0
    errors: list[dict] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"documents_added": self.documents_added, "chunks_added": self.chunks_added,
                "skipped": self.skipped, "errors": self.errors}


@dataclass
class Prepared:
    path: str
    sha256: str
    title: str
    size: int
    texts: list[str]
    n_tokens: list[int]
    vectors: np.ndarray


def chunk_key(sha: str, position: int, n_tokens: int | None) -> str:
    """What a label holds: a reused chunk id with another key gets a fresh vector."""
    return f"{sha}:{position}:{n_tokens}"


def unchanged(store: Store, path: str, sha: str) -> bool:
    row = store.one("SELECT sha256 FROM documents WHERE path = ?", (path,))
    return row is not None and row["sha256"] == sha


def prepare(path: Path, data: bytes, cfg: Config, embedder: Embedder) -> Prepared:
    """Everything slow happens here, before any write: parse, chunk and embed."""
    parsed = parse(path, data)
    limit = min(cfg.chunk_tokens, embedder.max_tokens)
    chunks = chunk_text(parsed.text, embedder, limit, min(cfg.chunk_overlap, limit // 2))
    if not chunks:
        raise BadInput("no text found in file")
    texts = [c.text for c in chunks]
    return Prepared(str(path.resolve()), sha256(data), parsed.title[:300], len(data), texts,
                    [c.n_tokens for c in chunks], embedder.encode(texts))


def store_document(store: Store, doc: Prepared) -> tuple[int, list[int], list[int]] | None:
    """One transaction: the document row and all its chunks (replacing older ones), or nothing.

    Returns (document id, replaced chunk ids, new chunk ids); None if it was already stored.
    """
    with store.write() as db:
        conn = db.conn
        row = conn.execute("SELECT id, sha256 FROM documents WHERE path = ?",
                           (doc.path,)).fetchone()
        if row is not None and row[1] == doc.sha256:
            return None  # another process stored the same content meanwhile
        old: list[int] = []
        if row is None:
            doc_id = conn.execute(
                "INSERT INTO documents (path, sha256, title, size, added_at) VALUES (?,?,?,?,?)",
                (doc.path, doc.sha256, doc.title, doc.size, utcnow())).lastrowid
        else:
            doc_id = row[0]
            old = [r[0] for r in conn.execute(
                "SELECT id FROM chunks WHERE document_id = ?", (doc_id,))]
            conn.execute("DELETE FROM chunks WHERE document_id = ?", (doc_id,))
            conn.execute("UPDATE documents SET sha256 = ?, title = ?, size = ?, added_at = ? "
                         "WHERE id = ?", (doc.sha256, doc.title, doc.size, utcnow(), doc_id))
        new = [conn.execute(
            "INSERT INTO chunks (document_id, position, text, n_tokens) VALUES (?,?,?,?)",
            (doc_id, pos, text, n)).lastrowid
            for pos, (text, n) in enumerate(zip(doc.texts, doc.n_tokens, strict=True))]
    return doc_id, old, new


def delete_document(store: Store, document_id: int) -> list[int]:
    """Remove a document and its chunks in one transaction; returns the chunk ids removed."""
    with store.write() as db:
        conn = db.conn
        if conn.execute("SELECT 1 FROM documents WHERE id = ?", (document_id,)).fetchone() is None:
            raise NotFound(f"no document {document_id}")
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM chunks WHERE document_id = ?", (document_id,))]
        conn.execute("DELETE FROM chunks WHERE document_id = ?", (document_id,))
        conn.execute("DELETE FROM documents WHERE id = ?", (document_id,))
    return ids


def has_content(store: Store, sha: str) -> bool:
    """Whether some document already holds these bytes (under any path)."""
    return store.one("SELECT 1 FROM documents WHERE sha256 = ?", (sha,)) is not None


def get_document(store: Store, document_id: int) -> dict | None:
    return store.one("SELECT id, path, title, sha256, size, added_at FROM documents "
                     "WHERE id = ?", (document_id,))


def retitle(store: Store, titles: dict[str, tuple[str, str]]) -> None:
    """path -> (old title, new title): each document whose title is still the old one gets the
    new one, all in one transaction; any other title (say, one found in the file) is kept."""
    with store.write() as db:
        for path, (old, new) in titles.items():
            db.conn.execute("UPDATE documents SET title = ? WHERE path = ? AND title = ?",
                            (new, path, old))


def list_documents(store: Store) -> list[dict]:
    return store.query(
        "SELECT d.id, d.path, d.title, d.sha256, d.size, d.added_at, count(c.id) AS chunks "
        "FROM documents d LEFT JOIN chunks c ON c.document_id = d.id GROUP BY d.id ORDER BY d.id")


def max_bytes(cfg: Config) -> int:
    return int(cfg.max_file_mb * 1024 * 1024)  # MiB, as the upload checks count it


def read(path: Path, cfg: Config) -> bytes:
    try:  # the path is stored as text: a name that is not UTF-8 cannot be
        str(path.resolve()).encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput("the file name is not valid UTF-8; rename the file") from None
    return read_bytes(path, max_bytes(cfg))
