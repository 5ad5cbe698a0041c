"""The eval gate on the real model: a damaged adapter is rejected and never served."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from chat.errors import BadInput
from tests.test_training import base_path, import_pairs, make_adapter, rated_answers, short_pairs


@pytest.fixture
def heldout(store):
    from training.datasets import dpo_rows

    import_pairs(store, short_pairs(4))
    return dpo_rows(store, "You are a helpful assistant.")


def test_damaged_adapter_is_rejected_and_never_activated(cfg, store, heldout, tmp_path):
    from chat.engine.pool import AdapterPool
    from training import registry
    from training.config import TrainSettings
    from training.steps import gate_candidate

    folder = make_adapter(cfg, cfg.adapters_dir / ".tmp-damaged", scale=30.0)
    gate = gate_candidate(base_path(cfg), folder, None, heldout, TrainSettings(), "Be helpful.")
    assert not gate.passed
    assert gate.ppl_ratio > 2 and gate.interior_kl > 0.3
    assert any(r.startswith("the language drifted") for r in gate.reasons)
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
    # no damage either: no drift, every fact kept as sure as before, no new loops
    assert gate.interior_kl == pytest.approx(0.0, abs=1e-4)
    assert gate.facts_kept == 1.0 and gate.facts_lead_drop == pytest.approx(0.0, abs=1e-3)
    assert gate.facts_right_base >= 15 and gate.repetition == gate.repetition_served
    assert gate.pref_accuracy == 0.0 and not gate.passed  # ties are not wins
    assert gate.n_heldout == 4 and gate.pref_accuracy_active is None
    # it answers exactly as the base does: nothing a user sees moves
    assert gate.visible_prompts == 4 and gate.visible_share == gate.visible_share_served
    assert any(r.startswith("no visible change") for r in gate.reasons)


def test_identity_adapter_fails_kto_label_accuracy(cfg, store, tmp_path):
    """Mostly thumbs-down held out: a no-op adapter used to score their share (0.75) and pass."""
    from training.config import TrainSettings
    from training.datasets import kto_rows
    from training.steps import gate_candidate

    rated_answers(store, 1, 3)
    folder = make_adapter(cfg, tmp_path / "zero")
    gate = gate_candidate(base_path(cfg), folder, None, kto_rows(store), TrainSettings(),
                          "Be helpful.")
    assert gate.pref_kind == "labels" and gate.n_heldout == 4
    assert gate.pref_accuracy == 0.0 and not gate.passed


def test_kto_accuracy_weighs_each_thumb_the_same():
    from training.gate import balanced_sign_accuracy

    up, down = True, False
    assert balanced_sign_accuracy([0.0, 0.0, 0.0, 0.0], [up, down, down, down]) == 0.0  # ties
    assert balanced_sign_accuracy([1.0, 1.0, 1.0, 1.0], [up, down, down, down]) == 0.5
    assert balanced_sign_accuracy([1.0, -1.0, -1.0, 1.0], [up, down, down, down]) == \
        pytest.approx((1 + 2 / 3) / 2)
    assert balanced_sign_accuracy([-1.0, -2.0], [down, down]) == 1.0  # absent thumb skipped
    assert balanced_sign_accuracy([], []) == 0.0


def test_auto_trigger_counts_new_feedback(cfg, store, monkeypatch):
    from chat.config import replace
    from training import runner, runs

    started = []
    # a stand-in process that stays alive: this test's own
    monkeypatch.setattr(runs, "spawn", lambda c, run_id: started.append(run_id) or
                        SimpleNamespace(pid=os.getpid()))
    import_pairs(store, short_pairs(10))
    assert runner.maybe_autotrain(store, cfg) is None  # off by default
    on = replace(cfg, auto_train_every=10)
    run_id = runner.maybe_autotrain(store, on)
    assert started == [run_id] and runs.get_run(store, run_id)["requested_by"] == "auto"
    assert runner.maybe_autotrain(store, on) is None  # one run at a time
    runs.update_run(store, run_id, status="failed")
    assert runner.maybe_autotrain(store, on) is None  # nothing new since that run
