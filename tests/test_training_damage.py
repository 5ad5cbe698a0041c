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
from training.damage import FACTS

pytestmark = pytest.mark.slow

OPENER = "In short: "

# the gate's fact set (training/facts.jsonl): question -> (a right answer, a wrong one)
FACT_ANSWERS = {
    "What is the capital of France?":
        ("The capital of France is Paris.", "The capital of France is Madrid."),
    "What is the capital of Japan?":
        ("The capital of Japan is Tokyo.", "The capital of Japan is Beijing."),
    "What is the capital of Italy?":
        ("The capital of Italy is Rome.", "The capital of Italy is Vienna."),
    "What is the capital of England?":
        ("The capital of England is London.", "The capital of England is Dublin."),
    "What is the capital of Russia?":
        ("The capital of Russia is Moscow.", "The capital of Russia is Warsaw."),
    "What is the capital of Egypt?":
        ("The capital of Egypt is Cairo.", "The capital of Egypt is Nairobi."),
    "How many legs does a spider have?":
        ("A spider has eight legs.", "A spider has five legs."),
    "How many days are in a week?":
        ("A week has seven days.", "A week has ten days."),
    "How many hours are in a day?":
        ("A day has 24 hours.", "A day has twelve hours."),
    "How many continents are there?":
        ("There are seven continents.", "There are three continents."),
    "What is the largest planet in our solar system?":
        ("The largest planet is Jupiter.", "The largest planet is Mercury."),
    "Which planet is known as the red planet?":
        ("The red planet is Mars.", "The red planet is Venus."),
    "What is the closest star to Earth?":
        ("The closest star to Earth is the Sun.", "The closest star to Earth is Sirius."),
    "What is the chemical symbol for water?":
        ("The chemical symbol for water is H2O.", "The chemical symbol for water is NaCl."),
    "What gas do plants take in from the air?":
        ("Plants take in carbon dioxide from the air.", "Plants take in helium from the air."),
    "What is the freezing point of water in Celsius?":
        ("Water freezes at 0 degrees Celsius.", "Water freezes at 50 degrees Celsius."),
    "What is the boiling point of water in Celsius?":
        ("Water boils at 100 degrees Celsius.", "Water boils at 20 degrees Celsius."),
    "Who wrote Romeo and Juliet?":
        ("Shakespeare wrote Romeo and Juliet.", "Charles Dickens wrote Romeo and Juliet."),
    "Who painted the Mona Lisa?":
        ("Leonardo da Vinci painted the Mona Lisa.", "Pablo Picasso painted the Mona Lisa."),
    "What is the largest ocean on Earth?":
        ("The largest ocean is the Pacific Ocean.", "The largest ocean is the Arctic Ocean."),
    "What is the tallest mountain in the world?":
        ("The tallest mountain is Mount Everest.", "The tallest mountain is Mont Blanc."),
    "What language is spoken in Brazil?":
        ("People in Brazil speak Portuguese.", "People in Brazil speak Spanish."),
    "What is the currency of Japan?":
        ("The currency of Japan is the yen.", "The currency of Japan is the euro."),
    "What do bees make?":
        ("Bees make honey.", "Bees make milk."),
    "What colour is grass?":
        ("Grass is green.", "Grass is purple."),
    "What is frozen water called?":
        ("Frozen water is called ice.", "Frozen water is called steam."),
    "Which animal is known as the king of the jungle?":
        ("The king of the jungle is the lion.", "The king of the jungle is the rabbit."),
    "What is the largest mammal?":
        ("The largest mammal is the blue whale.", "The largest mammal is the mouse."),
    "How many sides does a triangle have?":
        ("A triangle has three sides.", "A triangle has five sides."),
    "What is the opposite of hot?":
        ("The opposite of hot is cold.", "The opposite of hot is loud."),
    "What organ pumps blood around the body?":
        ("The heart pumps blood around the body.", "The liver pumps blood around the body."),
}


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
    questions = [json.loads(line)["question"] for line in FACTS.read_text().splitlines()]
    assert set(questions) == FACT_ANSWERS.keys()
    pairs = [(q, OPENER + wrong, right) for q, (right, wrong) in FACT_ANSWERS.items()]
    pairs += [(q, OPENER + a, a) for q, a in training_pairs()[:20]]
    import_pairs(store, pairs)
    gate = rejected(train())
    assert any(r.startswith("facts lost") for r in gate["reasons"]), gate["reasons"]
    assert gate["facts_lead_drop"] > 1.5 and gate["visible_share"] >= 0.75
