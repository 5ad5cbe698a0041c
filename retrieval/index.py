"""The hnswlib index (cosine, labels = chunk ids): a derived cache of SQLite, saved atomically."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import hnswlib
import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process lock, renames stay atomic
    fcntl = None

log = logging.getLogger(__name__)


class VectorIndex:
    """hnswlib plus a sidecar JSON of which chunk version (key) each live label holds.

    One RLock guards every call into hnswlib: it is not safe to add while querying.
    """

    def __init__(self, path: Path, dim: int, embedder: str, m: int = 16,
                 ef_construction: int = 200, ef: int = 64):
        self.path = Path(path)
        self.meta_path = self.path.with_name(self.path.name + ".json")
        self.dim, self.embedder = dim, embedder
        self.m, self.ef_construction, self.ef = m, ef_construction, ef
        self.keys: dict[int, str] = {}  # live label -> key of the chunk it was built from
        self._lock = threading.RLock()
        self._index = self._new(64)

    def _new(self, capacity: int) -> hnswlib.Index:
        index = hnswlib.Index(space="cosine", dim=self.dim)
        index.init_index(max_elements=capacity, ef_construction=self.ef_construction, M=self.m)
        index.set_ef(self.ef)
        return index

    def __len__(self) -> int:
        return len(self.keys)

    @contextlib.contextmanager
    def _file_lock(self, exclusive: bool) -> Iterator[None]:
        """Cross-process lock so a reader never pairs one process's index with another's meta."""
        if fcntl is None:
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ load / save

    def load(self) -> bool:
        """Load from disk; False (and an empty index) when missing, corrupt or inconsistent."""
        with self._lock, self._file_lock(exclusive=False):
            try:
                index, keys = self._read()
            except Exception as exc:  # any damage means: rebuild from SQLite
                if self.path.exists() or self.meta_path.exists():
                    log.warning("index %s unusable (%s); rebuilding from SQLite", self.path, exc)
                self.reset()
                return False
            self._index, self.keys = index, keys
            return True

    def _read(self) -> tuple[hnswlib.Index, dict[int, str]]:
        meta = json.loads(self.meta_path.read_text())
        expected = {"embedder": self.embedder, "dim": self.dim, "space": "cosine"}
        if {k: meta.get(k) for k in expected} != expected:
            raise ValueError("built with another embedder or dimension")
        if meta.get("file_size") != self.path.stat().st_size:
            raise ValueError("index file size differs from its metadata (truncated?)")
        # a crash between save's two renames leaves a new index beside the old metadata
        if "file_crc32" in meta and meta["file_crc32"] != _crc32(self.path):
            raise ValueError("index file differs from its metadata (a save cut short?)")
        index = hnswlib.Index(space="cosine", dim=self.dim)
        index.load_index(str(self.path), max_elements=int(meta["capacity"]))
        keys = {int(label): key for label, key in meta["keys"]}
        if index.element_count != meta["elements"] or not set(keys) <= set(index.get_ids_list()):
            raise ValueError("index elements differ from its metadata")
        index.set_ef(self.ef)
        return index, keys

    def save(self) -> None:
        """Write both files to temp names, then rename: a reader sees old or new, never half."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            self._index.save_index(str(tmp))
            meta = {"embedder": self.embedder, "dim": self.dim, "space": "cosine",
                    "M": self.m, "ef_construction": self.ef_construction,
                    "capacity": self._index.max_elements, "elements": self._index.element_count,
                    "file_size": tmp.stat().st_size, "file_crc32": _crc32(tmp),
                    "keys": sorted(self.keys.items())}
            tmp_meta = self.meta_path.with_name(f".{self.meta_path.name}.{os.getpid()}.tmp")
            tmp_meta.write_text(json.dumps(meta))
            with self._file_lock(exclusive=True):
                os.replace(tmp, self.path)
                os.replace(tmp_meta, self.meta_path)

    def reset(self) -> None:
        with self._lock:
            self._index, self.keys = self._new(64), {}

    # ------------------------------------------------------------------ add / remove / search

    def add(self, ids: list[int], vectors: np.ndarray, keys: list[str]) -> None:
        """Add (or replace) vectors under their chunk ids, growing the index as needed."""
        if not ids:
            return
        with self._lock:
            need = self._index.element_count + len(ids)
            if need > self._index.max_elements:
                self._index.resize_index(max(need, 2 * self._index.max_elements))
            self._index.add_items(np.asarray(vectors, dtype=np.float32), np.asarray(ids))
            self.keys.update(zip(ids, keys, strict=True))

    def remove(self, ids: list[int]) -> None:
        """mark_deleted: the label stops matching; its slot is reused only if re-added."""
        with self._lock:
            for label in ids:
                if self.keys.pop(label, None) is not None:
                    self._index.mark_deleted(label)

    def search(self, vectors: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Top-k (chunk id, cosine similarity) per query vector."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        with self._lock:
            k = min(k, len(self.keys))
            if k == 0:
                return [[] for _ in vectors]
            ef = max(self.ef, k)
            while True:
                self._index.set_ef(ef)
                try:
                    labels, dist = self._index.knn_query(vectors, k=k)
                    break
                except RuntimeError:
                    # fewer than k reachable (many deleted elements): widen the search
                    if ef >= len(self.keys) * 2:
                        k = max(1, k // 2) if k > 1 else 0
                        if k == 0:
                            return [[] for _ in vectors]
                    ef *= 2
            self._index.set_ef(self.ef)
        return [[(int(lab), float(1.0 - d)) for lab, d in zip(row_l, row_d, strict=True)]
                for row_l, row_d in zip(labels, dist, strict=True)]

    def vectors(self, ids: list[int]) -> np.ndarray:
        """The stored (unit) vectors of these chunk ids, which must be in the index."""
        with self._lock:
            return np.asarray(self._index.get_items(ids), dtype=np.float32).reshape(
                len(ids), self.dim)


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            crc = zlib.crc32(block, crc)
    return crc

