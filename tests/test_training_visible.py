"""The gate's visible-change check: a judge fitted on held-out feedback tells which side an
answer reads like, for any consistent behaviour, and the verdict says when nothing moved."""

from __future__ import annotations

import pytest

from training.config import GateSettings
from training.gate import GateResult, _reasons, _verdict
from training.visible import fit_judge, measure

ANSWERS = [
    "The capital of France is Paris. It sits on the Seine and has been the capital for centuries.",
    "Water boils at 100 degrees Celsius at sea level, and at lower temperatures higher up.",
    "A spider has eight legs, which sets it apart from insects, which have six.",
    "The Moon orbits the Earth about once every 27 days, always showing the same face.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen in plants.",
    "The Pacific is the largest ocean on Earth, larger than all the land put together.",
    "Bees make honey from the nectar of flowers and store it in wax combs in the hive.",
    "A violin has four strings, tuned in fifths: G, D, A and E from the lowest up.",
    "Mount Everest is the highest mountain above sea level, on the border of Nepal and China.",
    "The heart pumps blood around the body through arteries, and veins bring it back.",
    "Gold has the chemical symbol Au, from its Latin name aurum, and does not rust.",
    "An hour has sixty minutes and a day has twenty-four hours, so a day has 1440 minutes.",
    "The Nile is the longest river in Africa and flows north into the Mediterranean Sea.",
    "A hexagon has six sides; bees build hexagonal cells because they tile without gaps.",
    "Frozen water is called ice, and it floats because it is less dense than liquid water.",
    "The cheetah is the fastest land animal and can run at over 100 kilometres an hour.",
]

# each: a consistent preference, as a change to an answer the model wrote
BEHAVIOURS = {
    "phrase at the start": lambda a: "In short: " + a,
    "sign-off at the end": lambda a: a + "\n\nHope this helps!",
    "shorter answers": lambda a: " ".join(a.split()[:7]).rstrip(",.;:") + ".",
    "a bulleted list": lambda a: "\n".join("- " + s.strip().rstrip(".") for s in
                                           a.replace(",", ".").split(".") if s.strip()),
    "a term instead of another": lambda a: a.replace("The ", "Our ").replace(" the ", " our "),
    "a question back at the end": lambda a: a + " Would you like to know more?",
}


@pytest.mark.parametrize("name", sorted(BEHAVIOURS))
def test_the_judge_learns_each_behaviour_from_the_feedback_alone(name):
    change = BEHAVIOURS[name]
    seen = ANSWERS[:8]
    # judged on answers it was not fitted on, where the behaviour changes something
    unseen = [a for a in ANSWERS[8:] if change(a) != a]
    judge = fit_judge([change(a) for a in seen], seen)
    assert len(unseen) >= 4
    assert sum(judge(change(a)) > 0 for a in unseen) >= len(unseen) - 1, name
    assert sum(judge(a) < 0 for a in unseen) >= len(unseen) - 1, name


def test_an_empty_or_off_topic_answer_never_reads_liked():
    """A collapsed adapter (empty answers) must not pass because it lacks the disliked side's
    words; chatty disliked answers made an empty one score strongly 'liked'."""
    verbose = [a + " " + a for a in ANSWERS[:8]]
    judge = fit_judge([" ".join(a.split()[:6]) + "." for a in ANSWERS[:8]], verbose)
    assert judge("") == 0 and judge("   ") == 0 and judge("zzz qqq") == 0


def test_feedback_with_nothing_that_tells_its_sides_apart_is_not_measured():
    same = ANSWERS[:2]
    assert fit_judge(same, same) is None
    heldout = [{"prompt": [{"role": "user", "content": "q"}],
                "chosen": [{"role": "assistant", "content": a}],
                "rejected": [{"role": "assistant", "content": a}]} for a in same]
    assert measure(heldout, lambda prompts, adapter: ["x"] * len(prompts), "c", None, 8) is None


def _rows(change, answers):
    return [{"prompt": [{"role": "user", "content": f"question {i}"}],
             "chosen": [{"role": "assistant", "content": change(a)}],
             "rejected": [{"role": "assistant", "content": a}]} for i, a in enumerate(answers)]


def test_answers_that_moved_and_answers_that_did_not():
    change = BEHAVIOURS["sign-off at the end"]
    heldout = _rows(change, ANSWERS[:8])
    fresh = {i: a for i, a in enumerate(ANSWERS[8:])}  # what the versions answer greedily

    def answer(prompts, adapter):
        plain = [fresh[int(p[-1]["content"].split()[-1])] for p in prompts]
        return [change(a) for a in plain] if adapter == "learned" else plain

    moved = measure(heldout, answer, "learned", None, n_prompts=8)
    assert moved.share_candidate >= 0.8 and moved.share_served <= 0.2 and moved.n_prompts == 8
    still = measure(heldout, answer, "identity", None, n_prompts=8)
    assert still.moved == 0
    assert moved.examples[0]["candidate"].endswith("Hope this helps!")


def test_thumbs_only_feedback_is_judged_by_its_liked_answers():
    change = BEHAVIOURS["phrase at the start"]
    rows = [{"prompt": [{"role": "user", "content": f"q{i}"}],
             "completion": [{"role": "assistant", "content": text}], "label": up}
            for i, a in enumerate(ANSWERS[:8]) for text, up in ((change(a), True), (a, False))]
    seen = measure(rows, lambda prompts, adapter: [change(a) if adapter else a
                                                   for a in ANSWERS[8:8 + len(prompts)]],
                   "candidate", None, n_prompts=8)
    assert seen.share_candidate >= 0.8 and seen.share_served <= 0.2


def _gate(visible, served, **changes) -> GateResult:
    values = dict(passed=False, pref_accuracy=1.0, pref_accuracy_active=None, ppl_base=10.0,
                  ppl_candidate=11.0, ppl_ratio=1.1, n_heldout=8, visible_share=visible,
                  visible_share_served=served, visible_prompts=8)
    return GateResult(**{**values, **changes})


@pytest.mark.parametrize("visible, served, verdict", [
    (1.0, 0.0, "passed"), (0.0, 0.0, "no visible change"), (0.5, 0.375, "no visible change"),
    (0.625, 0.375, "passed")])
def test_the_verdict_names_an_adapter_whose_answers_do_not_move(visible, served, verdict):
    s = GateSettings()
    r = _gate(visible, served)
    r.reasons = _reasons(r, s)
    r.passed = not r.reasons
    assert _verdict(r, s) == verdict


def test_another_failure_is_a_failure_not_no_visible_change():
    s = GateSettings()
    r = _gate(0.0, 0.0, ppl_candidate=40.0, ppl_ratio=4.0)
    r.reasons = _reasons(r, s)
    assert _verdict(r, s) == "failed" and len(r.reasons) == 2


def test_feedback_with_one_side_only_is_not_measured():
    liked_only = [{"prompt": [{"role": "user", "content": f"q{i}"}],
                   "completion": [{"role": "assistant", "content": a}], "label": True}
                  for i, a in enumerate(ANSWERS[:4])]
    assert measure(liked_only, lambda prompts, adapter: ["x"] * len(prompts), "c", None,
                   8) is None
