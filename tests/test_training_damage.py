"""The gate rejects three bad adapters, each trained for real through the CLI: one from
contradictory labels, one over-trained until its answers degenerate, one that learned the
behaviour asked for but broke facts. (Good adapters passing: tests/test_training_scenarios.py.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.test_training import ROOT, import_pairs
from tests.test_training_efficacy import training_pairs
from training.config import TrainSettings
from training.damage import FACTS

pytestmark = pytest.mark.slow

OPENER = "In short: "


def train(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "launch.py", "train", "--method", "dpo", "--json",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    gate = dict(out["gate"], visible_examples="...")
    print("gate:", json.dumps(gate))
    return out


def rejected(out: dict) -> dict:
    assert out["status"] == "rejected" and not out["activated"], out
    assert not out["gate"]["passed"] and out["gate"]["verdict"] != "passed"
    return out["gate"]


def test_contradictory_labels_are_rejected(cfg, store):
    """Half the pairs prefer the opener, the other half its absence: nothing to learn."""
    pairs = []
    for i, (q, a) in enumerate(training_pairs()):
        with_opener = OPENER + a
        pairs.append((q, with_opener, a) if i % 2 else (q, a, with_opener))
    import_pairs(store, pairs)
    gate = rejected(train())
    assert gate["pref_accuracy"] < 0.8 or gate["verdict"] == "no visible change"


def test_over_trained_degenerate_adapter_is_rejected(cfg, store):
    """Plain DPO at a learning rate 20x the default, for many epochs and no early stop: the
    answers loop or fall apart, and the damage checks say so."""
    import_pairs(store, [(q, OPENER + a, a) for q, a in training_pairs()])
    gate = rejected(train("--learning-rate", "0.01", "--epochs", "6",
                          "--set", "optim.patience=0", "--set", "optim.sft_weight=0"))
    damage = [r for r in gate["reasons"] if r.startswith(("the language drifted",
                                                           "answers repeat", "facts lost"))]
    assert damage, gate["reasons"]


def test_learned_the_opener_but_broke_facts_is_rejected(cfg, store):
    """Chosen answers open as asked but state wrong facts: the behaviour is learned (the
    answers move), and the fact check rejects it."""
    facts = [json.loads(line) for line in FACTS.read_text().splitlines()]
    pairs = [(f["question"], OPENER + f["wrong"], f["right"]) for f in facts]
    pairs += [(q, OPENER + a, a) for q, a in training_pairs()[:20]]
    import_pairs(store, pairs)
    gate = rejected(train())
    assert any(r.startswith("facts lost") for r in gate["reasons"]), gate["reasons"]
    bound = TrainSettings.from_dict({}).gate.max_facts_drop
    assert gate["facts_lead_drop"] > bound and gate["visible_share"] >= 0.75
