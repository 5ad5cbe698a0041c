"""Hot-swap in a running service: in-flight answers keep their version; the next gets the new
one; activation from another process arrives within 2 s; rollback restores. Real model."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from chat.errors import BadInput, NotFound
from tests.test_training import ROOT, register_adapter


@pytest.fixture(scope="module")
def engine():
    """Our own copy of the real model: adapters loaded here do not leak into other tests."""
    from chat.config import load_config
    from chat.engine.engine import Engine
    from tests.conftest import MODEL_CACHE

    return Engine.from_config(load_config(model_cache=MODEL_CACHE))


def make_service(cfg, store, engine, watch=True):
    from tests.wiring_support import wired

    service = wired(cfg, engine, store, watch_interval_s=0.2).service
    if watch:
        service.adapters.start()
    return service, service.adapters


def wait_for(pool, version, limit_s=2.0) -> float:
    start = time.monotonic()
    while pool.active != version and time.monotonic() - start < limit_s:
        time.sleep(0.02)
    return time.monotonic() - start


def test_swap_during_streaming_answer(cfg, store, engine):
    from chat.engine.engine import GenParams
    from training import registry

    v1, v2 = register_adapter(cfg, store, seed=1), register_adapter(cfg, store, seed=2)
    registry.activate(store, v1)
    service, pool = make_service(cfg, store, engine)
    try:
        params = GenParams(max_new_tokens=12)
        stream = service.stream("Tell me about the sea.", "u", params=params)
        first = next(stream)
        assert first.adapter_version == v1
        cli = subprocess.run([sys.executable, "launch.py", "adapters", "activate", v2],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stderr
        assert wait_for(pool, v2) < 2.0  # reached the running service from another process
        *_, finished = stream  # the in-flight answer completes on the version it started with
        assert finished.adapter_version == v1 and finished.text.startswith(first.text)
        assert store.message(finished.message_id)["adapter_version"] == v1
        nxt = service.ask("Tell me about the sea.", "u", params=params)
        assert store.message(nxt.message_id)["adapter_version"] == v2
        assert set(pool.loaded) >= {v1, v2}  # previous kept loaded for instant rollback
        assert registry.rollback(store) == v1
        assert wait_for(pool, v1) < 2.0
        assert service.ask("Hello", "u", params=params).adapter_version == v1
    finally:
        pool.stop()


def test_pinning_and_unknown_versions(cfg, store, engine):
    from training import registry

    v1 = register_adapter(cfg, store, seed=3)
    rejected = register_adapter(cfg, store, seed=4, passed=False)
    service, pool = make_service(cfg, store, engine, watch=False)
    assert pool.resolve(None) is None  # nothing active: the base model
    assert pool.resolve("base") == "base"
    assert pool.resolve(v1) == v1  # a candidate can be pinned (e.g. `ask --adapter`)
    with pytest.raises(NotFound, match="v0077"):
        service.ask("Hi", "u", adapter="v0077")
    with pytest.raises(BadInput, match="rejected"):
        pool.resolve(rejected)
    registry.activate(store, v1)
    assert pool.resolve(None) == v1  # without a watcher the registry is read per request
