"""The Retriever shared by all server threads: ingest, delete, and search with citations."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from chat.config import Config
from chat.errors import ChatError, NotFound
from chat.prompt import Source
from feedback.store import Store
from retrieval import ingest as ing
from retrieval.embed import Embedder
from retrieval.index import VectorIndex
from retrieval.parse import iter_files, sha256
from retrieval.query_map import apply
from retrieval.versions import QueryMaps

log = logging.getLogger(__name__)

KNOWLEDGE_DIR = Path(__file__).resolve().parents[1] / "knowledge"


class Retriever:
    """SQLite is the truth; the index follows it (loaded, repaired or rebuilt on first use)."""

    def __init__(self, cfg: Config, store: Store, embedder: Embedder | None = None,
                 index_path: Path | None = None, seed_dir: Path | None = None):
        self.cfg = cfg
        self.store = store
        self.embedder = embedder or Embedder(cfg)
        self.index_path = index_path or cfg.data_dir / "index.hnsw"
        self.seed_dir = seed_dir
        self._index: VectorIndex | None = None
        self._signature: tuple | None = None
        self._sync_lock = threading.RLock()  # one writer of the index at a time
        self.maps = QueryMaps(store, cfg.data_dir / "retrievers")  # learned query maps

    # ------------------------------------------------------------------ keeping the index in step

    def _state(self) -> tuple:
        """Cheap fingerprint of the documents: any ingest bumps added_at, any delete the count."""
        row = self.store.one("SELECT count(*) AS n, max(added_at) AS t, total(id) AS s "
                             "FROM documents")
        return row["n"], row["t"], row["s"]

    @property
    def index(self) -> VectorIndex:
        self.refresh()
        return self._index

    def refresh(self) -> None:
        """Bring the index in step with SQLite (another process may have ingested or deleted)."""
        if self._index is not None and self._state() == self._signature:
            return
        with self._sync_lock:
            state = self._state()  # read before the keys: a later change triggers another sync
            if self._index is not None and state == self._signature:
                return
            if self._index is None:
                self._open()
            if self._sync():
                self._index.save()
            self._signature = state

    def _open(self) -> None:
        index = VectorIndex(self.index_path, self.embedder.dim, self.embedder.name,
                            self.cfg.hnsw_m, self.cfg.hnsw_ef_construction, self.cfg.hnsw_ef)
        index.load()
        self._index = index
        if self.seed_dir is not None and self._state()[0] == 0:
            log.info("empty knowledge base: ingesting %s", self.seed_dir)
            report = self.ingest([self.seed_dir])
            for error in report.errors:
                log.warning("knowledge base: %s: %s", error["path"], error["error"])

    def _sync(self) -> bool:
        """Add chunks the index lacks (embedding their text), drop ones SQLite no longer has."""
        rows = self.store.query(
            "SELECT c.id, d.sha256, c.position, c.n_tokens FROM chunks c "
            "JOIN documents d ON d.id = c.document_id")
        want = {r["id"]: ing.chunk_key(r["sha256"], r["position"], r["n_tokens"]) for r in rows}
        have = self._index.keys
        stale = [i for i, key in have.items() if want.get(i) != key]
        missing = [i for i, key in want.items() if have.get(i) != key]
        self._index.remove(stale)
        for start in range(0, len(missing), 4096):
            ids = missing[start:start + 4096]
            marks = ",".join("?" * len(ids))
            texts = {r["id"]: r["text"] for r in self.store.query(
                f"SELECT id, text FROM chunks WHERE id IN ({marks})", ids)}
            ids = [i for i in ids if i in texts]
            if ids:
                log.info("indexing %d chunks from SQLite", len(ids))
                vectors = self.embedder.encode([texts[i] for i in ids],
                                               progress=None if len(missing) > 128 else False)
                self._index.add(ids, vectors, [want[i] for i in ids])
        return bool(stale or missing)

    # ------------------------------------------------------------------ documents in and out

    def ingest(self, paths: Iterable[str | Path]) -> ing.IngestReport:
        """Ingest files and folders; bad files go to `errors` and store nothing."""
        report = ing.IngestReport()
        for path in iter_files(paths):
            try:
                data = ing.read(path, self.cfg)
                if ing.unchanged(self.store, str(path.resolve()), sha256(data)):
                    report.skipped += 1
                    continue
                prepared = ing.prepare(path, data, self.cfg, self.embedder)
            except ChatError as exc:
                report.errors.append({"path": str(path), "error": str(exc)})
                continue
            except Exception as exc:  # one unexpected failure must not abort the batch
                log.exception("ingesting %s", path)
                report.errors.append({"path": str(path), "error": f"{type(exc).__name__}: {exc}"})
                continue
            with self._sync_lock:
                index = self._index or self._opened_without_seed()
                stored = ing.store_document(self.store, prepared)
                if stored is None:
                    report.skipped += 1
                    continue
                _, old, new = stored
                index.remove(old)
                index.add(new, prepared.vectors,
                          [ing.chunk_key(prepared.sha256, p, n)
                           for p, n in enumerate(prepared.n_tokens)])
            report.documents_added += 1
            report.chunks_added += len(new)
        if report.documents_added:
            with self._sync_lock:
                self._index.save()
        return report

    def _opened_without_seed(self) -> VectorIndex:
        seed, self.seed_dir = self.seed_dir, None  # an explicit ingest is not a first start
        try:
            self.refresh()
        finally:
            self.seed_dir = seed
        return self._index

    def delete(self, document_id: int) -> int:
        """Delete a document, its chunks and their vectors; returns the number of chunks."""
        if self.store.one("SELECT 1 FROM documents WHERE id = ?", (document_id,)) is None:
            raise NotFound(f"no document {document_id}")  # before loading the embedder
        with self._sync_lock:
            index = self._index or self._opened_without_seed()
            ids = ing.delete_document(self.store, document_id)
            index.remove(ids)
            index.save()
        return len(ids)

    def documents(self) -> list[dict]:
        return ing.list_documents(self.store)

    # ------------------------------------------------------------------ search

    def resolve_version(self) -> str | None:
        """The retriever version served now (None: the plain embedder); an answer keeps the
        one it started with."""
        return self.maps.resolve()

    def query_vectors(self, queries: list[str], version: str | None) -> np.ndarray:
        return apply(self.maps.get(version), self.embedder.encode(queries, progress=False))

    def search(self, query: str, k: int, min_score: float,
               version: str | None = None) -> list[Source]:
        """Top-k chunks with cosine similarity >= min_score, best first; `version` maps the
        query first (a learned retriever version, retrieval/query_map.py)."""
        if k <= 0:  # retrieval switched off (CHAT_TOP_K=0): no embedder, no first-start seeding
            return []
        index = self.index
        if len(index) == 0:
            return []
        vector = self.query_vectors([query], version)
        hits = [(i, s) for i, s in index.search(vector, k)[0] if s >= min_score]
        if not hits:
            return []
        marks = ",".join("?" * len(hits))
        rows = {r["id"]: r for r in self.store.query(
            "SELECT c.id, c.text, d.title, d.path FROM chunks c JOIN documents d "
            f"ON d.id = c.document_id WHERE c.id IN ({marks})", [i for i, _ in hits])}
        # a chunk deleted between the index lookup and this read is simply left out
        return [Source(i, rows[i]["title"] or Path(rows[i]["path"]).name, s, rows[i]["text"])
                for i, s in hits if i in rows]
