"""Does a candidate change what users see? Implicit-reward accuracy can be perfect while greedy
answers never show the behaviour (an adapter that ranks pairs but whose answers do not move).
So the gate also asks both the candidate and what serves now for greedy answers to held-out
prompts, and a small judge fitted on the held-out feedback itself says which side of it each
answer reads like: liked (chosen answers, thumbs up) or disliked (rejected, thumbs down).

The judge is a Bernoulli naive Bayes over what tells the two sides apart in text: words and
word pairs, the first and last words (an opening phrase, a sign-off), how lines start (lists),
and the answer's length (log scale). It knows nothing of any one behaviour."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

_WORD = re.compile(r"\w+|[^\w\s]")
MIN_SHARE = 0.25  # of a side's texts a feature must be in to count


def features(text: str) -> set[str]:
    """What the judge sees of a text."""
    words = [w.lower() for w in _WORD.findall(text)]
    out = set(words) | {f"{a} {b}" for a, b in zip(words, words[1:], strict=False)}
    out |= {f"^{w}" for w in words[:3]} | {f"{w}$" for w in words[-3:]}
    for line in text.splitlines():
        line = line.strip()
        if line:
            out.add("line:" + (line[0] if not line[0].isalnum() else "w"))
    # cumulative, so that answers of similar length share most of these
    out |= {f"len>={n}" for n in (4, 8, 16, 24, 32, 48, 64, 96, 128) if len(words) >= n}
    return out


def fit_judge(liked: list[str], disliked: list[str]) -> Callable[[str], float] | None:
    """A text's log-odds of reading like the liked side (> 0: liked); None when nothing
    recurs that tells the sides apart (then nothing can be measured)."""
    seen = [Counter(f for t in side for f in features(t)) for side in (liked, disliked)]
    sizes = [max(1, len(liked)), max(1, len(disliked))]
    # only what recurs on a side can be a behaviour; a word of one answer is its content,
    # and would make every unseen answer (which lacks it) look like the other side
    vocab = {f for side in (0, 1) for f, n in seen[side].items()
             if n >= max(2, MIN_SHARE * sizes[side])}

    def p(side: int, f: str) -> float:  # Laplace-smoothed share of that side's texts with f
        return (seen[side][f] + 1) / (sizes[side] + 2)

    weights = {f: (math.log(p(0, f)) - math.log(p(1, f)),
                   math.log(1 - p(0, f)) - math.log(1 - p(1, f))) for f in vocab}
    weights = {f: w for f, w in weights.items() if w != (0.0, 0.0)}
    if not weights:
        return None
    absent = sum(w[1] for w in weights.values())

    def log_odds(text: str) -> float:
        present = features(text) & weights.keys()
        if not present:  # an empty or off-topic answer is on neither side (it did not move)
            return 0.0
        return absent + sum(weights[f][0] - weights[f][1] for f in present)

    return log_odds


@dataclass
class Visible:
    """How the held-out answers of the candidate and of the served version read."""
    share_candidate: float  # of held-out prompts whose candidate answer reads liked
    share_served: float  # the same for the version serving now (active adapter, else base)
    n_prompts: int
    examples: list[dict] = field(default_factory=list)  # a few answers, for the admin
    answers_candidate: list[str] = field(default_factory=list, repr=False)
    answers_served: list[str] = field(default_factory=list, repr=False)

    @property
    def moved(self) -> float:
        return self.share_candidate - self.share_served


def sides(heldout: list[dict]) -> tuple[list[str], list[str]]:
    """(liked texts, disliked texts) of held-out pairs or thumbs."""
    if heldout and "label" in heldout[0]:
        liked = [r["completion"][0]["content"] for r in heldout if r["label"]]
        disliked = [r["completion"][0]["content"] for r in heldout if not r["label"]]
        return liked, disliked
    return ([r["chosen"][0]["content"] for r in heldout],
            [r["rejected"][0]["content"] for r in heldout])


def prompts_of(heldout: list[dict], n: int) -> list[list[dict]]:
    """Up to `n` distinct held-out prompts, in their order."""
    out, seen = [], set()
    for row in heldout:
        key = repr(row["prompt"])
        if key not in seen:
            seen.add(key)
            out.append(row["prompt"])
    return out[:n]


def measure(heldout: list[dict], answer: Callable[[list[list[dict]], str | None], list[str]],
            candidate: str, served: str | None, n_prompts: int) -> Visible | None:
    """Judge the greedy answers `answer(prompts, adapter)` of both versions (None: the
    feedback lacks one side, or has nothing that tells its sides apart: nothing is measured)."""
    liked, disliked = sides(heldout)
    judge = fit_judge(liked, disliked) if liked and disliked else None
    if judge is None:
        return None
    prompts = prompts_of(heldout, n_prompts)
    new, old = answer(prompts, candidate), answer(prompts, served)
    share = [sum(judge(t) > 0 for t in texts) / max(1, len(texts)) for texts in (new, old)]
    examples = [{"question": p[-1]["content"], "served": o, "candidate": c}
                for p, o, c in list(zip(prompts, old, new, strict=True))[:2]]
    return Visible(round(share[0], 3), round(share[1], 3), len(prompts), examples, new, old)
