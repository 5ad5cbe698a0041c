"""The eval gate on the real model: a damaged adapter is rejected and never served."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from chat.errors import BadInput
from tests.test_training import base_path, import_pairs, make_adapter, short_pairs


@pytest.fixture
def heldout(store):
    from training.datasets import dpo_rows

    import_pairs(store, short_pairs(4))
    return dpo_rows(store, "You are a helpful assistant.")


def test_damaged_adapter_is_rejected_and_never_activated(cfg, store, heldout, tmp_path):
    from training import registry
    from training.config import TrainSettings
    from training.pool import AdapterPool
    from training.steps import gate_candidate

    folder = make_adapter(cfg, cfg.adapters_dir / ".tmp-damaged", scale=30.0)
    gate = gate_candidate(base_path(cfg), folder, None, heldout, TrainSettings(), "Be helpful.")
    assert not gate.passed
    assert gate.ppl_ratio > 2 and any("perplexity" in r for r in gate.reasons)
    version = registry.register(store, cfg.adapters_dir, folder, method="dpo", base_model="b",
                                metrics={"gate": gate.as_dict()}, meta={}, passed=gate.passed,
                                run_id=None)
    assert registry.get(store, version)["status"] == "rejected"
    with pytest.raises(BadInput, match="eval gate"):
        registry.activate(store, version)
    assert AdapterPool(store, None, cfg).resolve(None) is None


def test_identity_adapter_matches_base_and_fails_accuracy(cfg, heldout, tmp_path):
    from training.config import TrainSettings
    from training.steps import gate_candidate

    folder = make_adapter(cfg, tmp_path / "zero")  # LoRA B = 0: exactly the base model
    gate = gate_candidate(base_path(cfg), folder, None, heldout, TrainSettings(), "Be helpful.")
    assert gate.ppl_ratio == pytest.approx(1.0, abs=1e-3)
    assert gate.pref_accuracy == 0.0 and not gate.passed  # ties are not wins
    assert gate.n_heldout == 4 and gate.pref_accuracy_active is None


def test_auto_trigger_counts_new_feedback(cfg, store, monkeypatch):
    from chat.config import replace
    from training import runner

    started = []
    # a stand-in process that stays alive: this test's own
    monkeypatch.setattr(runner, "spawn", lambda c, run_id: started.append(run_id) or
                        SimpleNamespace(pid=os.getpid()))
    import_pairs(store, short_pairs(10))
    assert runner.maybe_autotrain(store, cfg) is None  # off by default
    on = replace(cfg, auto_train_every=10)
    run_id = runner.maybe_autotrain(store, on)
    assert started == [run_id] and runner.get_run(store, run_id)["requested_by"] == "auto"
    assert runner.maybe_autotrain(store, on) is None  # one run at a time
    runner.update_run(store, run_id, status="failed")
    assert runner.maybe_autotrain(store, on) is None  # nothing new since that run
