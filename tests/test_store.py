"""The SQLite store: pinned schema, feedback verbs, concurrent writers, kill -9 durability."""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from chat.errors import BadInput, NotFound
from feedback.store import Store

ROOT = Path(__file__).resolve().parents[1]

# Changing the schema means a new migration AND an update here, on purpose.
EXPECTED = {
    "_sqlite_migrations": {"id": int, "migration_set": str, "name": str, "applied_at": str},
    "users": {"name": str, "role": str, "password_hash": str, "created_at": str},
    "api_keys": {"key_hash": str, "user": str, "created_at": str},
    "conversations": {"id": int, "user": str, "created_at": str, "title": str,
                      "hidden_at": str},
    "prompt_profiles": {
        "version": int, "system_prompt": str, "few_shot_json": str, "source_template": str,
        "status": str, "note": str, "created_by": str, "created_at": str},
    "messages": {
        "id": int, "conversation_id": int, "parent_id": int, "role": str, "content": str,
        "adapter_version": str, "prompt_version": int, "sources_json": str, "params_json": str,
        "prompt_json": str, "created_at": str, "retriever_version": str},
    "ratings": {"id": int, "message_id": int, "user": str, "value": int, "reason": str,
                "comment": str, "created_at": str},
    "corrections": {"id": int, "message_id": int, "user": str, "content": str,
                    "created_at": str},
    "preferences": {
        "id": int, "prompt_json": str, "chosen": str, "rejected": str, "source": str,
        "user": str, "message_id": int, "adapter_version": str, "prompt_version": int,
        "created_at": str},
    "comparisons": {
        "id": int, "prompt_json": str, "answer_a": str, "answer_b": str, "adapter_a": str,
        "adapter_b": str, "choice": str, "user": str, "preference_id": int, "created_at": str},
    "documents": {"id": int, "path": str, "sha256": str, "title": str, "size": int,
                  "added_at": str},
    "chunks": {"id": int, "document_id": int, "position": int, "text": str, "n_tokens": int},
    "adapters": {
        "version": str, "path": str, "parent_version": str, "method": str, "base_model": str,
        "metrics_json": str, "meta_json": str, "status": str, "run_id": int, "created_at": str,
        "activated_at": str, "erased_data": int},
    "training_runs": {
        "id": int, "method": str, "status": str, "requested_by": str, "pid": int,
        "cancel_requested": int, "started_at": str, "finished_at": str, "n_examples": int,
        "adapter_version": str, "progress_json": str, "metrics_json": str, "error": str,
        "pid_identity": str},
    "training_events": {"id": int, "run_id": int, "step": int, "total": int,
                        "metrics_json": str, "created_at": str},
    "serving_log": {"id": int, "version": str, "at": str},
    "source_feedback": {"id": int, "user": str, "query": str, "chunk_id": int, "value": int,
                        "message_id": int, "created_at": str},
    "retrievers": {"version": str, "status": str, "run_id": int, "created_at": str,
                   "activated_at": str, "metrics_json": str, "meta_json": str,
                   "erased_data": int},
    "retriever_serving_log": {"id": int, "version": str, "at": str},
}


def _answer(store, user="alice", text="Paris is the capital.", version="base"):
    conv = store.create_conversation(user, "q")
    q = store.record_message(conv, "user", "Capital of France?")
    return store.record_message(conv, "assistant", text, parent_id=q, adapter_version=version,
                                prompt=[{"role": "user", "content": "Capital of France?"}])


def test_schema_is_pinned(store):
    actual = {t: store.db[t].columns_dict for t in store.db.table_names()}
    assert actual == EXPECTED


def test_store_uses_wal(store):
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_reopening_applies_no_migration_twice(store):
    applied = store.query("SELECT name FROM _sqlite_migrations ORDER BY id")
    again = Store(store.path)
    assert again.query("SELECT name FROM _sqlite_migrations ORDER BY id") == applied
    assert applied[0]["name"] == "m001_initial"
    assert len({r["name"] for r in applied}) == len(applied)


def test_changing_ones_mind_replaces_the_rating(store):
    mid = _answer(store)
    first = store.record_rating(mid, "alice", 1)
    second = store.record_rating(mid, "alice", -1, "too long", "shorter please")
    rows = store.query("SELECT * FROM ratings")
    assert first == second and len(rows) == 1
    assert (rows[0]["value"], rows[0]["reason"], rows[0]["comment"]) == (
        -1, "too long", "shorter please")
    store.record_rating(mid, "bob", 1)
    assert store.counts()["ratings"] == 2


@pytest.mark.parametrize("kwargs", [{"value": 0}, {"value": -1, "reason": "boring"}])
def test_bad_rating_is_refused_and_changes_nothing(store, kwargs):
    mid = _answer(store)
    with pytest.raises(BadInput):
        store.record_rating(mid, "alice", **kwargs)
    assert store.counts()["ratings"] == 0


def test_rating_a_user_message_or_unknown_id_is_refused(store):
    mid = _answer(store)
    with pytest.raises(BadInput):
        store.record_rating(mid - 1, "alice", 1)
    with pytest.raises(NotFound):
        store.record_rating(mid + 100, "alice", 1)


def test_correction_is_also_a_preference(store):
    mid = _answer(store, text="Lyon.")
    store.record_correction(mid, "alice", "Paris.")
    (pref,) = store.query("SELECT * FROM preferences")
    assert (pref["chosen"], pref["rejected"], pref["source"]) == ("Paris.", "Lyon.", "correction")
    assert json.loads(pref["prompt_json"])[-1]["content"] == "Capital of France?"
    with pytest.raises(BadInput):
        store.record_correction(mid, "alice", "  Lyon. ")
    assert store.counts()["corrections"] == 1


def test_a_pair_of_the_same_answer_is_refused(store):
    prompt = [{"role": "user", "content": "hi"}]
    with pytest.raises(BadInput, match="same text"):
        store.record_preference(prompt, "Hello.", "Hello. ", "alice")
    with pytest.raises(BadInput, match="same text"):
        store.record_comparison(prompt, "Hello.", "Hello.", "a", "alice")
    store.record_comparison(prompt, "Hello.", "Hello.", "tie", "alice")  # a fair verdict
    assert (store.counts()["preferences"], store.counts()["comparisons"]) == (0, 1)


@pytest.mark.parametrize("choice,pair", [
    ("a", ("A text", "B text", "base")), ("b", ("B text", "A text", "v2")),
    ("tie", None), ("both_bad", None)])
def test_comparison_choice(store, choice, pair):
    prompt = [{"role": "user", "content": "hi"}]
    store.record_comparison(prompt, "A text", "B text", choice, "alice", "base", "v2")
    assert store.counts()["comparisons"] == 1
    prefs = store.query("SELECT chosen, rejected, adapter_version FROM preferences")
    assert [tuple(p.values()) for p in prefs] == ([pair] if pair else [])


def test_users_see_only_their_own_conversations(store):
    _answer(store, user="alice")
    bob_conv = store.create_conversation("bob", "secret")
    assert [c["user"] for c in store.conversations("alice")] == ["alice"]
    with pytest.raises(NotFound):
        store.conversation(bob_conv, "alice")


# ---------------------------------------------------------------------------- concurrency


def test_32_threads_x_100_ratings_all_land(store):
    conv = store.create_conversation("t")
    ids = [store.record_message(conv, "assistant", f"a{i}") for i in range(100)]
    errors = []
    barrier = threading.Barrier(32)

    def writer(w):
        barrier.wait()
        for mid in ids:
            try:
                store.record_rating(mid, f"user{w}", 1 if mid % 2 else -1)
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(repr(exc))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.db.execute("SELECT count(*) FROM ratings").fetchone()[0] == 3200
    assert store.db.execute("SELECT count(DISTINCT user) FROM ratings").fetchone()[0] == 32


WRITER = """
import sys
from feedback.store import Store
store = Store(sys.argv[1])
conv = store.create_conversation("killed")
print("ready", flush=True)
i = 0
while True:
    mid = store.record_message(conv, "assistant", f"answer {i}", adapter_version="base")
    print("message", mid, flush=True)
    print("rating", store.record_rating(mid, "killed", 1 if i % 2 else -1), flush=True)
    if i % 3 == 0:
        print("correction", store.record_correction(mid, "killed", f"better {i}"), flush=True)
    i += 1
"""


def _acknowledged(out: bytes) -> dict[str, set[int]]:
    acked: dict[str, set[int]] = {"message": set(), "rating": set(), "correction": set()}
    for line in out.decode().splitlines(keepends=True):
        parts = line.split()
        if line.endswith("\n") and len(parts) == 2 and parts[0] in acked:
            acked[parts[0]].add(int(parts[1]))
    return acked


def test_sigkill_never_loses_acknowledged_writes(tmp_path):
    db = tmp_path / "killed.db"
    Store(db)  # migrate once up front so every writer starts writing at once
    rng = random.Random()
    seed = rng.randrange(2**32)
    rng.seed(seed)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    total = {"message": set(), "rating": set(), "correction": set()}
    for _ in range(20):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE,
                                env=env, cwd=ROOT)
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        for kind, ids in _acknowledged(out).items():
            total[kind] |= ids
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f"seed {seed}"
    for kind, table in (("message", "messages"), ("rating", "ratings"),
                        ("correction", "corrections")):
        present = {r[0] for r in conn.execute(f"SELECT id FROM {table}")}
        assert total[kind] <= present, f"seed {seed}: lost {sorted(total[kind] - present)}"
    assert len(total["rating"]) > 20  # the writers really wrote between kills


def test_wal_is_checkpointed_so_it_stays_small(store):
    from feedback.store import CHECKPOINT_EVERY

    conv = store.create_conversation("w")
    n = 8 * CHECKPOINT_EVERY
    for i in range(n):
        store.record_message(conv, "assistant", f"a{i}")
    page = store.db.execute("PRAGMA page_size").fetchone()[0]
    wal = store.path.with_name(store.path.name + "-wal").stat().st_size
    # every commit appends at least one page: without checkpoints the WAL would exceed n pages
    assert wal < n * page / 2


def test_processes_opening_a_new_database_at_once_all_start(tmp_path):
    code = "import sys; from feedback.store import Store; Store(sys.argv[1])"
    for round_ in range(5):
        path = str(tmp_path / f"fresh-{round_}.db")
        procs = [subprocess.Popen([sys.executable, "-c", code, path], cwd=ROOT,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
        errors = [p.communicate()[1] for p in procs if p.wait() != 0]
        assert errors == []
        assert Store(path).counts()["conversations"] == 0


def test_text_sqlite_cannot_store_is_a_clear_error_and_writes_nothing(store):
    conv = store.create_conversation("alice")
    mid = store.record_message(conv, "assistant", "Paris.", prompt=[])
    before = store.counts()
    with pytest.raises(BadInput, match="not valid Unicode"):
        store.record_rating(mid, "alice", -1, "wrong facts", "bad \ud800")
    with pytest.raises(BadInput, match="not valid Unicode"):
        store.record_correction(mid, "alice", "Lyon \udc00")
    assert store.counts() == before


def test_a_batch_is_one_transaction_stored_whole_or_not_at_all(store):
    before = store.counts()
    with pytest.raises(RuntimeError):
        with store.batch() as rows:
            mid = rows.message(rows.conversation("imp"), "assistant", "An answer.")
            rows.rating(mid, "imp", 1)
            rows.correction(mid, "imp", "A better answer.", original="An answer.",
                            prompt_json="[]", adapter_version=None)
            raise RuntimeError("a later row fails")
    assert store.counts() == before
    with store.batch() as rows:
        mid = rows.message(rows.conversation("imp"), "assistant", "An answer.")
        rows.correction(mid, "imp", "A better answer.", original="An answer.",
                        prompt_json="[]", adapter_version=None)
    (pref,) = store.query("SELECT chosen, rejected, source, message_id FROM preferences")
    assert pref == {"chosen": "A better answer.", "rejected": "An answer.",
                    "source": "correction", "message_id": mid}
