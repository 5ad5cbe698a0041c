"""Efficacy (public scenario): DPO on 60 'Short answer:' pairs changes greedy answers to new
questions, and the gate passes. Real model, real TRL, the real CLI in its own process."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.test_training import ROOT, import_pairs

CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"),
            ("Germany", "Berlin"), ("Canada", "Ottawa"), ("Egypt", "Cairo"),
            ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Norway", "Oslo"), ("Greece", "Athens"),
            ("Poland", "Warsaw"), ("Chile", "Santiago"), ("Cuba", "Havana"),
            ("Ireland", "Dublin")]
ANIMALS = [("cow", "moo"), ("dog", "bark"), ("cat", "meow"), ("duck", "quack"),
           ("sheep", "baa"), ("lion", "roar"), ("horse", "neigh"), ("owl", "hoot"),
           ("pig", "oink"), ("snake", "hiss"), ("frog", "croak"), ("bee", "buzz"),
           ("mouse", "squeak"), ("wolf", "howl"), ("crow", "caw")]
COLOURS = [("grass", "green"), ("snow", "white"), ("the sky", "blue"), ("a banana", "yellow"),
           ("coal", "black"), ("a tomato", "red"), ("an orange", "orange"),
           ("chocolate", "brown"), ("a lemon", "yellow"), ("milk", "white"),
           ("a carrot", "orange"), ("blood", "red"), ("the sea", "blue"), ("a lime", "green"),
           ("ash", "grey")]
MATHS = [(a, b) for a, b in [(2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (12, 13), (3, 9),
                             (5, 15), (7, 21), (20, 30), (11, 22), (14, 6), (9, 9), (1, 99),
                             (25, 25)]]


def training_pairs() -> list[tuple[str, str]]:
    qa = [(f"What is the capital of {c}?", f"The capital of {c} is {k}.") for c, k in CAPITALS]
    qa += [(f"What sound does a {a} make?", f"A {a} says {s}.") for a, s in ANIMALS]
    qa += [(f"What colour is {t}?", f"{t[0].upper() + t[1:]} is {c}.") for t, c in COLOURS]
    qa += [(f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.") for a, b in MATHS]
    return qa


HELDOUT = [
    "How many legs does a spider have?", "Who painted the Mona Lisa?",
    "What is the largest ocean on Earth?", "How many hours are in a day?",
    "What language is spoken in Brazil?", "What gas do plants breathe in?",
    "Which planet is known as the red planet?", "What is the chemical symbol for gold?",
    "How many strings does a violin have?", "What is the fastest land animal?",
    "Who was the first person to walk on the Moon?", "What is the currency of Japan?",
    "How many sides does a hexagon have?", "What is frozen water called?",
    "Which organ pumps blood around the body?", "What do bees make?",
    "What is the longest river in Africa?", "How many minutes are in an hour?",
    "What is the main language of Mexico?", "What instrument has 88 keys?",
]


def short_share(service, questions, adapter) -> float:
    from chat.engine.engine import GenParams

    params = GenParams(temperature=0.0, max_new_tokens=6)
    hits = sum(service.ask(q, "eval", adapter=adapter, params=params, record=False)
               .text.strip().startswith("Short answer:") for q in questions)
    return hits / len(questions)


def test_dpo_teaches_short_answer_prefix(cfg, store, real_engine):
    from chat.runtime import build_runtime

    qa = training_pairs()
    assert len(qa) == 60 and not set(HELDOUT) & {q for q, _ in qa}
    import_pairs(store, [(q, "Short answer: " + a, a) for q, a in qa])
    rt = build_runtime(cfg, engine=real_engine)
    before = short_share(rt.service, HELDOUT, "base")

    proc = subprocess.run([sys.executable, "launch.py", "train", "--method", "dpo", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print("train:", json.dumps(out))
    assert out["status"] == "succeeded" and out["activated"], out
    assert out["gate"]["passed"] and out["n_heldout"] >= 10
    assert out["gate"]["verdict"] == "passed" and out["gate"]["visible_share"] >= 0.75

    after = short_share(rt.service, HELDOUT, None)  # the newly active adapter
    print(f"short-answer share: before {before:.2f}, after {after:.2f}")
    assert before < 0.10
    assert after >= 0.70
