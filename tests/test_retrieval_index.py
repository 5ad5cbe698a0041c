"""The hnswlib index as a cache of SQLite: rebuilt, followed across processes, kept in step."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from chat.config import replace
from chat.errors import NotFound
from tests import test_retrieval as shared
from tests.test_retrieval import JUPITER, make_pdf, top_document

# the shared fixtures, bound here
embedder, retriever, corpus = shared.embedder, shared.retriever, shared.corpus


def test_missing_or_truncated_index_is_rebuilt(cfg, store, embedder, retriever, corpus):
    from retrieval.retriever import Retriever

    retriever.ingest([corpus])
    path = cfg.data_dir / "index.hnsw"
    path.unlink()
    fresh = Retriever(cfg, store, embedder=embedder)
    assert fresh.search("moons of Jupiter", 1, 0.0)[0].document == "jupiter"
    assert path.exists() and len(fresh.index) == 3

    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    again = Retriever(cfg, store, embedder=embedder)
    assert again.search("volcano eruption", 1, 0.0)[0].document == "How volcanoes erupt"
    assert path.stat().st_size == len(data)


def test_index_follows_sqlite_changed_by_another_process(cfg, store, embedder, retriever,
                                                         corpus):
    from feedback.store import Store
    from retrieval.retriever import Retriever

    retriever.ingest([corpus / "bread.md"])
    assert len(retriever.index) == 1
    other = Retriever(cfg, Store(cfg.db_path), embedder=embedder)  # like a CLI process
    other.ingest([corpus])
    assert top_document(retriever, "moons of Jupiter") == "jupiter"
    bread = store.one("SELECT id FROM documents WHERE title LIKE 'Baking%'")["id"]
    other.delete(bread)
    assert all(s.document != "Baking sourdough bread"
               for s in retriever.search("sourdough starter", 3, 0.0))


def test_bad_files_are_reported_and_store_nothing(retriever, tmp_path, store, cfg):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.pdf").write_bytes(make_pdf(JUPITER)[:120])
    (bad / "empty.txt").write_text("")
    (bad / "blank.html").write_bytes(b"")
    (bad / "notes.docx").write_bytes(b"PK\x03\x04")
    latin1 = os.fsdecode(b"caf\xe9.txt")  # a name from a Latin-1 system: not UTF-8
    (bad / latin1).write_text("Coffee.")
    report = retriever.ingest([bad, bad / "notes.docx", tmp_path / "missing.md"])
    errors = {Path(e["path"]).name: e["error"] for e in report.errors}
    assert set(errors) == {"broken.pdf", "empty.txt", "blank.html", "notes.docx", "missing.md",
                           latin1}
    assert "PDF" in errors["broken.pdf"] and "empty" in errors["empty.txt"]
    assert errors[latin1] == "the file name is not valid UTF-8; rename the file"
    assert report.documents_added == 0 and report.chunks_added == 0
    assert store.counts()["documents"] == 0 and store.counts()["chunks"] == 0

    big = tmp_path / "big.txt"
    big.write_text("word " * 5000)
    small = replace(cfg, max_file_mb=0.01)
    from retrieval.retriever import Retriever

    report = Retriever(small, store, embedder=retriever.embedder).ingest([big])
    assert report.errors[0]["error"] == "file too large (0.0238 MiB; the limit is 0.01 MiB)"
    assert store.counts()["documents"] == 0


def test_delete_removes_rows_and_vectors(retriever, corpus, store):
    retriever.ingest([corpus])
    doc = store.one("SELECT id FROM documents WHERE title = 'How volcanoes erupt'")["id"]
    chunk_ids = [r["id"] for r in store.query("SELECT id FROM chunks WHERE document_id = ?",
                                              (doc,))]
    assert retriever.delete(doc) == len(chunk_ids) >= 1
    assert store.query("SELECT id FROM chunks WHERE document_id = ?", (doc,)) == []
    assert not set(chunk_ids) & set(retriever.index.keys)
    assert all(s.document != "How volcanoes erupt"
               for s in retriever.search("volcano eruption magma", 3, 0.0))
    with pytest.raises(NotFound):
        retriever.delete(doc)


def test_concurrent_queries_while_ingesting(retriever, corpus, store, tmp_path):
    retriever.ingest([corpus / "jupiter.pdf"])
    extra = tmp_path / "extra"
    extra.mkdir()
    for i in range(12):
        (extra / f"note{i}.txt").write_text(
            f"Note {i}: the meeting about budget item {i} moved to room {100 + i}. " * 3)
    failures: list[BaseException] = []
    results: list[list] = []
    stop = threading.Event()

    def query_loop():
        try:
            while not stop.is_set():
                results.append(retriever.search("What are the moons of Jupiter?", 3, 0.0))
        except BaseException as exc:  # noqa: BLE001 - any failure fails the test
            failures.append(exc)

    threads = [threading.Thread(target=query_loop) for _ in range(3)]
    for t in threads:
        t.start()
    report = retriever.ingest([extra])
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not failures and report.documents_added == 12
    assert len(results) >= 3
    texts = {r["id"]: r["text"] for r in store.query("SELECT id, text FROM chunks")}
    for sources in results:
        assert sources[0].document == "jupiter"
        assert all(texts[s.chunk_id] == s.text for s in sources)
    assert len(retriever.index) == len(texts) == 13
