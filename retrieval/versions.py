"""Retriever versions: rows in `retrievers` + folders retrievers/rNNNN holding a query map.
Registered, activated, rolled back and retired like adapters (training/registry.py); a
version is a matrix applied to query vectors, so the corpus index is shared by all of them."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np

from chat.errors import BadInput, NotFound
from feedback.served import ServedVersions
from feedback.store import Store, decoded, dumps, utcnow
from retrieval.query_map import QueryMap

VERSION_RE = re.compile(r"^r\d{4,}$")
MAP_FILE = "query_map.npz"
COMPLETE_MARKER = "meta.json"  # written last: a folder without it is incomplete
SERVED = ServedVersions("retrievers", "retriever_serving_log")


def check_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise BadInput(f"retriever version must look like r0001, got {version!r}")
    return version


def _decode(row: dict | None) -> dict | None:
    return decoded(row, "metrics_json", "meta_json")


def get(store: Store, version: str) -> dict:
    row = _decode(store.one("SELECT * FROM retrievers WHERE version = ?",
                            (check_version(version),)))
    if row is None:
        raise NotFound(f"no retriever {version}; see `python launch.py retrievers list`")
    return row


def list_versions(store: Store) -> list[dict]:
    return [_decode(r) for r in store.query(
        "SELECT * FROM retrievers ORDER BY CAST(substr(version, 2) AS INTEGER)")]


def active_version(store: Store) -> str | None:
    return SERVED.active(store)


def register(store: Store, root: Path, query_map: QueryMap, *, metrics: dict, meta: dict,
             passed: bool, run_id: int | None) -> str:
    """Write retrievers/rNNNN (map, then meta last) and add its row, in one transaction."""
    root.mkdir(parents=True, exist_ok=True)
    with store.write() as db:
        last = db.conn.execute(
            "SELECT max(CAST(substr(version, 2) AS INTEGER)) FROM retrievers").fetchone()[0]
        version = f"r{(last or 0) + 1:04d}"
        tmp, target = root / f".tmp-{version}", root / version
        for stale in (tmp, target):  # left by a process killed before its commit: no row
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
        np.savez(tmp / MAP_FILE, matrix=query_map.matrix, trained=query_map.trained,
                 span=np.array([query_map.start, query_map.full]))
        (tmp / COMPLETE_MARKER).write_text(json.dumps({**meta, "version": version,
                                                       "metrics": metrics}, indent=2))
        os.replace(tmp, target)
        db.conn.execute(
            "INSERT INTO retrievers (version, status, run_id, created_at, metrics_json, "
            "meta_json) VALUES (?, ?, ?, ?, ?, ?)",
            (version, "candidate" if passed else "rejected", run_id, utcnow(), dumps(metrics),
             dumps(meta)))
    return version


def activate(store: Store, version: str) -> dict:
    """Serve `version` (running servers follow on their next question)."""
    row = get(store, version)
    if row["status"] == "rejected":
        raise BadInput(f"retriever {version} failed the retrieval gate and cannot be activated")
    if row["erased_data"]:
        raise BadInput(f"retriever {version} was trained on feedback of a forgotten user and "
                       "cannot be served again")
    with store.write() as db:
        SERVED.switch(db, version)
    return get(store, version)


def rollback(store: Store) -> str | None:
    """Serve again what was served before: an earlier version, or the plain embedder (None)."""
    current = active_version(store)
    prev = SERVED.before(store, current)
    if prev is None and current is None:
        raise BadInput("the plain embedder is served and nothing was before it; nothing to "
                       "roll back")
    version = prev["version"] if prev else None
    with store.write() as db:
        SERVED.switch(db, version)
    return version


def retire_erased(db, user: str, erased_keys: set[str]) -> tuple[list[str], str | None]:
    """Inside forget's transaction: mark every version whose training or held-out marks
    include the user's (or rows erased with them); if the served one is among them, serve
    the latest earlier-served version without such data, or the plain embedder (None).
    Returns (versions marked, version served now)."""
    marked = [r["version"] for r in map(_decode, db.query(
        "SELECT * FROM retrievers WHERE NOT erased_data"))
        if user in r["meta"].get("feedback_users", [])
        or erased_keys & {k.split(":")[0] for k in r["meta"].get("mark_keys", [])}]
    return marked, SERVED.mark_erased(db, marked)[1]


class QueryMaps:
    """The served version, read per question (a cheap indexed read, so every process follows
    activation at once), and each version's matrix loaded once."""

    def __init__(self, store: Store, root: Path):
        self.store, self.root = store, root
        self._maps: dict[str, QueryMap] = {}
        self._lock = threading.Lock()

    def resolve(self) -> str | None:
        return active_version(self.store)

    def get(self, version: str | None) -> QueryMap | None:
        if version is None:
            return None
        with self._lock:
            if version not in self._maps:
                path = self.root / check_version(version) / MAP_FILE
                if not path.exists():
                    raise NotFound(f"retriever {version}: {path} is missing")
                with np.load(path) as saved:
                    start, full = (float(x) for x in saved["span"])
                    self._maps[version] = QueryMap(saved["matrix"], saved["trained"], start,
                                                   full)
            return self._maps[version]
