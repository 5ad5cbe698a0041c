"""The learning scenario suite (training/scenarios.py) through its own command: each
behaviour is learned from the base model's own answers, served, and shown on held-out
questions. Two scenarios run by default (an opener and shorter answers, from pairs); every
behaviour from pairs and from thumbs is slow (docs/learning.md says which are learned today)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import MODEL_CACHE
from tests.test_training import ROOT
from training.scenario_cases import behaviours


def run_suite(tmp_path, only: str, methods: str) -> list[dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "training.scenarios", "--only", only, "--methods", methods,
         "--json", "--work", str(tmp_path), "--models", str(MODEL_CACHE)],
        cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    for row in rows:
        print(json.dumps(row))
    return rows


def check_learned(row: dict) -> None:
    assert row["share_before"] < 0.1, row
    assert row["verdict"] == "passed" and row["activated"], row
    assert row["share_after"] >= 0.8, row
    assert row["heldout_questions"] >= 10 and row["n_train"] >= 40, row


def test_opener_from_pairs(tmp_path):
    [row] = run_suite(tmp_path, "opener", "dpo")
    check_learned(row)


def test_shorter_answers_from_pairs(tmp_path):
    [row] = run_suite(tmp_path, "shorter", "dpo")
    check_learned(row)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dpo", "kto"])
@pytest.mark.parametrize("name", list(behaviours()))
def test_every_behaviour(tmp_path, name, method):
    [row] = run_suite(tmp_path, name, method)
    check_learned(row)
