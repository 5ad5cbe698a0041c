"""`users forget`: a user's rows gone from the file and the WAL, the adapters their feedback
trained retired for good, what is served switched, a retrain queued on what remains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from chat.errors import BadInput, NotFound
from feedback.sources import record as record_source
from retrieval import versions
from tests.test_registry import fake_adapter

SECRET = "alice-secret-7731"


def alice_and_others(store) -> dict:
    """Alice chats, rates, corrects and picks; Bob rates one of her answers; Bob and Carol
    import pairs. Returns the ids of Alice's rows the adapters can be trained on."""
    from chat import auth
    from tests.test_training import import_pairs, short_pairs

    auth.add_user(store, "alice", "correct horse battery", "user")
    auth.add_user(store, "root", "correct horse battery", "admin")
    auth.create_api_key(store, "alice")
    conv = store.create_conversation("alice", f"about {SECRET}")
    q = store.record_message(conv, "user", f"What is {SECRET}?")
    prompt = [{"role": "user", "content": f"What is {SECRET}?"}]
    a = store.record_message(conv, "assistant", f"{SECRET} is a code.", parent_id=q,
                             prompt=prompt)
    rating = store.record_rating(a, "alice", -1, "wrong facts", SECRET)
    store.record_rating(a, "bob", 1)  # on her answer: it quotes her
    store.record_correction(a, "alice", f"{SECRET} is a password.")
    store.record_comparison(prompt, f"{SECRET} one", f"{SECRET} two", "a", "alice")
    sources = [{"chunk_id": 1, "document": "kb"}]
    answer = store.record_message(conv, "assistant", "See the manual.", parent_id=q,
                                  prompt=prompt, sources=sources)
    source_mark = record_source(store, "alice", store.message(answer), 1, -1)
    alice_pairs = import_pairs(store, short_pairs(4), user="alice")
    import_pairs(store, short_pairs(8, 10), user="bob")
    import_pairs(store, short_pairs(8, 20), user="carol")
    return {"preferences": alice_pairs, "rating": rating, "source": source_mark}


def retriever_version(cfg, store, users: list[str], keys: list[str]) -> str:
    import numpy as np

    from retrieval.query_map import QueryMap

    query_map = QueryMap(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32), 0.3, 0.5)
    return versions.register(store, cfg.data_dir / "retrievers", query_map, metrics={},
                             meta={"feedback_users": users, "mark_keys": keys}, passed=True,
                             run_id=None)


def adapter(cfg, store, feedback_ids: list[int], name: str) -> str:
    from training import registry
    from training.config import TrainSettings

    meta = {"feedback_ids": feedback_ids, "heldout_ids": [], "feedback_kind": "preferences",
            "hyper_parameters": TrainSettings(method="dpo").as_dict()}
    return registry.register(store, cfg.adapters_dir, fake_adapter(cfg, name), method="dpo",
                             base_model=cfg.base_model, metrics={}, meta=meta, passed=True,
                             run_id=None)


def test_forget_deletes_everything_of_theirs_and_retires_what_they_trained(
        cfg, store, monkeypatch):
    from chat.engine.pool import AdapterPool
    from chat.forget import forget_user
    from training import registry, runs

    ids = alice_and_others(store)
    clean_retriever = retriever_version(cfg, store, users=["bob"], keys=["s999"])
    versions.activate(store, clean_retriever)
    tainted_retriever = retriever_version(cfg, store, users=["bob"], keys=[f"s{ids['source']}"])
    versions.activate(store, tainted_retriever)
    clean = adapter(cfg, store, [100], "clean")  # trained on others' feedback only
    registry.activate(store, clean)
    tainted = adapter(cfg, store, [ids["preferences"][0], 100], "tainted")
    registry.activate(store, tainted)
    started = []
    monkeypatch.setattr(runs, "spawn", lambda c, run_id: started.append(run_id) or
                        SimpleNamespace(pid=os.getpid()))
    before = store.counts()

    out = forget_user(store, cfg, "alice", requested_by="root")

    assert out.deleted["users"] == 1 and out.deleted["api_keys"] == 1
    assert out.deleted["conversations"] == 1
    assert out.deleted["ratings"] == 2  # hers and Bob's on her answer
    assert out.deleted["preferences"] == 4 + 2  # imported, the correction's, the pick's
    assert out.deleted["corrections"] == 1 and out.deleted["comparisons"] == 1
    assert out.deleted["source_feedback"] == 1 and out.deleted["messages"] == 3
    assert out.retrievers_retired == [tainted_retriever]
    assert out.retriever_served_now == clean_retriever == versions.active_version(store)
    after = store.counts()
    assert before["preferences"] - after["preferences"] == 6
    for table in ("conversations", "messages", "ratings", "corrections", "comparisons",
                  "source_feedback"):
        assert after[table] == 0, table
    assert out.versions_retired == [tainted]
    assert (out.served_before, out.served_now) == (tainted, clean)
    assert registry.active_version(store) == clean
    with pytest.raises(BadInput, match="forgotten user"):
        registry.activate(store, tainted)
    with pytest.raises(BadInput, match="forgotten user"):  # nor pinned by a request
        AdapterPool(store, None, cfg).resolve(tainted)
    assert tainted not in [r["version"] for r in registry.servable(store)]
    assert out.run_queued == started[0] and out.wal_truncated
    queued = runs.get_run(store, out.run_queued)
    assert queued["requested_by"] == "root"
    # no readable copy: not in the database file, and the WAL was emptied
    assert SECRET.encode() not in cfg.db_path.read_bytes()
    wal = cfg.db_path.with_name(cfg.db_path.name + "-wal")
    assert not wal.exists() or SECRET.encode() not in wal.read_bytes()


def test_forget_falls_back_to_the_base_model_and_rolls_back_past_erased(cfg, store,
                                                                        monkeypatch):
    from chat.forget import forget_user
    from training import registry, runs

    ids = alice_and_others(store)
    only = adapter(cfg, store, ids["preferences"], "only")
    registry.activate(store, only)
    monkeypatch.setattr(runs, "spawn", lambda c, run_id: SimpleNamespace(pid=os.getpid()))
    out = forget_user(store, cfg, "alice", retrain=False)
    assert (out.served_before, out.served_now) == (only, None)
    assert out.run_queued is None and out.retrain_note == "not asked for"
    with pytest.raises(BadInput):  # nothing earlier to go back to: the erased one is skipped
        registry.rollback(store)


def test_forget_refuses_the_last_admin_and_unknown_names(cfg, store):
    from chat import auth
    from chat.forget import forget_user

    auth.add_user(store, "root", "correct horse battery", "admin")
    conv = store.create_conversation("root")
    before = store.counts()
    with pytest.raises(BadInput, match="last admin"):
        forget_user(store, cfg, "root")
    assert store.counts() == before and auth.get_user(store, "root") is not None
    assert store.conversation(conv)["user"] == "root"
    with pytest.raises(NotFound):
        forget_user(store, cfg, "nobody")
    auth.add_user(store, "second", "correct horse battery", "admin")
    assert forget_user(store, cfg, "root").deleted["users"] == 1


def test_users_forget_cli_prints_what_it_did(cfg, store):
    from tests.test_training import ROOT

    def cli(*args):
        return subprocess.run([sys.executable, "launch.py", "users", "forget", *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    alice_and_others(store)
    out = json.loads(cli("alice", "--json").stdout)
    assert out["user"] == "alice" and out["deleted"]["users"] == 1
    assert out["versions_retired"] == [] and out["run_queued"] is None
    bad = cli("alice")
    assert bad.returncode == 2 and "no user 'alice'" in bad.stderr


@pytest.mark.slow
def test_forgetting_the_user_behind_the_served_adapter_on_the_real_path(cfg, store):
    """A real DPO adapter trained on Alice's, Bob's and Carol's pairs is served; `users
    forget alice` (another process) retires it, the running service leaves it within its
    watch interval, and the retrain it queued learns from Bob's and Carol's rows only."""
    from tests.test_hotswap import make_service, wait_for
    from tests.test_training import ROOT
    from training import registry, runs

    ids = alice_and_others(store)
    train = subprocess.run([sys.executable, "launch.py", "train", "--method", "dpo",
                            "--max-steps", "2", "--json", "--set", "gate.visible_prompts=0",
                            "--set", "gate.min_pref_accuracy=0"], cwd=ROOT, capture_output=True,
                           text=True, timeout=900)
    trained = json.loads(train.stdout.splitlines()[-1])["adapter_version"]
    assert set(ids["preferences"]) & set(registry.get(store, trained)["meta"]["feedback_ids"])
    registry.activate(store, trained)
    service, pool = make_service(cfg, store, service_engine())
    try:
        assert wait_for(pool, trained) < 2.0
        forget = subprocess.run([sys.executable, "launch.py", "users", "forget", "alice",
                                 "--json"], cwd=ROOT, capture_output=True, text=True,
                                timeout=120)
        out = json.loads(forget.stdout)
        assert out["versions_retired"] == [trained] and out["served_now"] is None
        assert wait_for(pool, None) < 2.0  # the running service left it at its next watch
    finally:
        pool.stop()
    deadline = time.time() + 900
    while runs.going_run(store) == out["run_queued"] and time.time() < deadline:
        time.sleep(1)
    retrained = registry.of_run(store, out["run_queued"])
    meta = registry.get(store, retrained["version"])["meta"]
    assert meta["feedback_users"] and "alice" not in meta["feedback_users"]
    assert not set(ids["preferences"]) & set(meta["feedback_ids"] + meta["heldout_ids"])
    assert not store.query("SELECT id FROM preferences WHERE user = 'alice'")


def service_engine():
    from chat.config import load_config
    from chat.engine.engine import Engine
    from tests.conftest import MODEL_CACHE

    return Engine.from_config(load_config(model_cache=MODEL_CACHE))


def test_a_run_reading_their_feedback_is_cancelled(cfg, store, monkeypatch):
    from chat import auth, forget
    from training import registry, runs
    from training.config import TrainSettings

    ids = alice_and_others(store)
    served = adapter(cfg, store, ids["preferences"], "served")
    registry.activate(store, served)
    going = runs.create_run(store, TrainSettings(method="dpo"), "root")
    monkeypatch.setattr(forget, "CANCEL_WAIT_S", 0.0)
    out = forget.forget_user(store, cfg, "alice")
    assert out.run_cancelled == going and runs.cancel_requested(store, going)
    assert out.run_queued is None and f"run {going} is still ending" in out.retrain_note
    # a user with no feedback leaves a going run alone
    auth.add_user(store, "quiet", "correct horse battery", "user")
    assert forget.forget_user(store, cfg, "quiet").run_cancelled is None
