"""Source feedback (feedback/sources.py), retriever versions (retrieval/versions.py) and the
rank metrics of the retrieval gate, without models. The real path: test_retrieval_learning."""

from __future__ import annotations

import json

import numpy as np
import pytest

from chat.errors import BadInput
from feedback import sources
from feedback.importer import import_file
from feedback.stats import feedback_stats
from retrieval import versions
from retrieval.query_map import QueryMap, rank_metrics


def _chunks(store, n: int = 3) -> list[int]:
    with store.write() as db:
        for doc in ("a.md", "b.md"):
            db.conn.execute("INSERT INTO documents (path, sha256, title, size, added_at) "
                            "VALUES (?, ?, ?, 1, 'now')", (f"/kb/{doc}", doc, doc.upper()))
        for i in range(n):
            db.conn.execute("INSERT INTO chunks (document_id, position, text, n_tokens) "
                            "VALUES (?, ?, 'text', 1)", (1 + i % 2, i))
    return [r["id"] for r in store.query("SELECT id FROM chunks ORDER BY id")]


def _answer(store, chunk_ids, user="alice", question="Where is the manual?"):
    conv = store.create_conversation(user)
    q = store.record_message(conv, "user", question)
    mid = store.record_message(conv, "assistant", "There.", parent_id=q,
                               sources=[{"chunk_id": c, "document": "x"} for c in chunk_ids])
    return store.message(mid)


def test_a_thumbs_down_blaming_sources_marks_the_unmarked_ones_not_relevant(store):
    c1, c2, c3 = _chunks(store)
    msg = _answer(store, [c1, c2, c3])
    sources.record(store, "alice", msg, c1, 1)
    store.record_rating(msg["id"], "alice", -1, "wrong or missing source")
    marks = {(m.chunk_id, m.value, m.implicit) for m in sources.training_marks(store)}
    assert marks == {(c1, 1, False), (c2, -1, True), (c3, -1, True)}
    other = _answer(store, [c1], question="Another?")
    store.record_rating(other["id"], "alice", -1, "wrong facts")  # blames generation
    assert len(sources.training_marks(store)) == 3
    per_doc = feedback_stats(store)["sources_by_document"]
    assert per_doc[0] == {"document": "A.MD", "helped": 1, "not_relevant": 1,
                          "implied_by_thumbs_down": 1}


def test_a_mark_must_name_a_cited_chunk_and_a_valid_value(store):
    c1, c2, _ = _chunks(store)
    msg = _answer(store, [c1])
    before = store.counts()
    for chunk, value in ((c2, 1), (c1, 0), (c1, True), ("1", 1)):
        with pytest.raises(BadInput):
            sources.record(store, "alice", msg, chunk, value)
    assert store.counts() == before


def test_import_of_source_lines_is_all_or_nothing(store, tmp_path):
    c1, c2, _ = _chunks(store)
    good = {"type": "source", "query": "q?", "chunk_id": c1, "value": 1, "user": "u"}
    path = tmp_path / "f.jsonl"
    for bad in ({**good, "chunk_id": 999}, {**good, "value": 2}, {**good, "query": ""},
                {k: v for k, v in good.items() if k != "user"}):
        path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(BadInput):
            import_file(store, path)
        assert store.counts()["source_feedback"] == 0
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "chunk_id": c2,
                                                          "value": -1}) + "\n")
    assert import_file(store, path) == {"source": 2}
    assert {(m.chunk_id, m.value) for m in sources.training_marks(store)} == {(c1, 1), (c2, -1)}


def _register(store, tmp_path, passed=True, users=("alice",), keys=("s1",)):
    query_map = QueryMap(np.eye(4, dtype=np.float32), np.eye(4, dtype=np.float32)[:1], 0.3, 0.5)
    return versions.register(store, tmp_path / "retrievers", query_map, metrics={},
                             meta={"feedback_users": list(users), "mark_keys": list(keys)},
                             passed=passed, run_id=None)


def test_versions_activate_roll_back_and_refuse_rejected_or_erased(store, tmp_path):
    first, second = _register(store, tmp_path), _register(store, tmp_path, users=("bob",),
                                                         keys=("r7:3",))
    rejected = _register(store, tmp_path, passed=False)
    with pytest.raises(BadInput, match="failed the retrieval gate"):
        versions.activate(store, rejected)
    versions.activate(store, first)
    versions.activate(store, second)
    assert versions.rollback(store) == first and versions.active_version(store) == first
    assert versions.rollback(store) == second
    loaded = versions.QueryMaps(store, tmp_path / "retrievers").get(second)
    assert loaded.start == pytest.approx(0.3) and loaded.matrix.shape == (4, 4)
    with store.write() as db:  # bob's rating 7 erased: the version it trained goes
        assert versions.retire_erased(db, "carol", {"r7"}) == ([second], first)
    assert versions.active_version(store) == first  # the last served without it
    with store.write() as db:  # alice's own mark: nothing left to serve but the embedder
        assert versions.retire_erased(db, "alice", set()) == ([first, rejected], None)
    assert versions.active_version(store) is None
    with pytest.raises(BadInput, match="forgotten user"):
        versions.activate(store, second)


def test_query_map_moves_only_queries_near_what_it_was_trained_on():
    turn = np.array([[0, 1], [1, 0]], dtype=np.float32)  # swaps the two axes
    trained = np.array([[1, 0]], dtype=np.float32)
    query_map = QueryMap(turn, trained, start=0.5, full=0.9)
    near, far = np.array([[1, 0]], np.float32), np.array([[0, 1]], np.float32)
    assert np.allclose(query_map.apply(near), [[0, 1]])
    assert np.allclose(query_map.apply(far), [[0, 1]])  # cosine 0 to trained: unmoved


def test_rank_metrics():
    out = rank_metrics([[5, 6, 7], [8, 9, 10]], [{6}, {99}], [{5}, set()], k=1)
    assert out["mrr"] == 0.25 and out["hit@1"] == 0.0 and out["not_relevant@1"] == 1.0
    assert out["helped_mean_rank"] == 3.0  # rank 2, and 4 for the one not ranked
