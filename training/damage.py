"""Damage, not change: does a candidate harm the language or what the model knows?

Perplexity of fixed reference answers rises whenever answers are asked to open or close
differently, which is the point of such training. These checks look where the requested
behaviour does not act:
- `interior_kl`: how far the candidate's next-token distributions drift from the base's on the
  reference answers, leaving out each answer's first and last tokens (where openers and
  sign-offs live), as a median over tokens so that the few places a format or a length
  preference acts (a sentence's end) do not count as damage, while drift everywhere does;
- `facts`: short factual questions the base answers right (the right sentence likelier than a
  wrong one): the right sentence's lead must not fall much (measured: good adapters moved it by
  -0.8 to 0.6 nats on average on the learning suite and 1.56 on the public efficacy scenario,
  one trained on wrong facts by 4.1);
- `repetition`: the share of repeated word 4-grams in the candidate's greedy answers, against
  the served version's (an over-trained adapter loops)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from training.scoring import answer_batches, paired_logps, shipped_set

FACTS = Path(__file__).with_name("facts.jsonl")
EDGE_TOKENS = 8  # answer tokens left out at each end of a reference answer


def fact_items(system_prompt: str | None) -> list[tuple[list[dict], str, str]]:
    """(prompt, right answer, wrong answer) of each fact in the shipped set."""
    return [(prompt, item["right"], item["wrong"])
            for prompt, item in shipped_set(FACTS, system_prompt)]


@dataclass
class Facts:
    known_base: int  # facts whose right answer the base finds likelier than the wrong one
    kept: float | None  # share of those the candidate still gets right
    lead_drop: float | None  # mean nats the right answer's lead over the wrong one fell


def facts_kept(model, tok, items: list[tuple[list[dict], str, str]], candidate: str) -> Facts:
    """Does the candidate still know what the base knows? For each fact the base knows, the
    lead of the right sentence's log-likelihood over a wrong one's, before and after. The two
    differ only where the fact is stated, inside the sentence ("The capital of France is
    Paris." / "... Madrid."), so a format acting on an answer's first tokens (an opener, a
    bold first sentence) changes both alike: scored as bare words ("Paris" / "Madrid"), the
    fact *was* the first token, and an adapter that wanted "**" there lost 3.5 nats of lead
    without losing a fact. Likelihoods, not greedy text: a small model's long greedy answers
    flip on any change."""
    rights = [(p, right) for p, right, _ in items]
    wrongs = [(p, wrong) for p, _, wrong in items]
    n = len(items)

    def leads(adapter) -> list[float]:
        right, wrong = paired_logps(model, tok, rights, wrongs, adapter)
        return [r - w for r, w in zip(right, wrong, strict=True)]

    base = leads(None)
    known = [i for i in range(n) if base[i] > 0]
    if not known:
        return Facts(0, None, None)
    cand = leads(candidate)
    kept = sum(cand[i] > 0 for i in known) / len(known)
    drop = sum(base[i] - cand[i] for i in known) / len(known)
    return Facts(len(known), round(kept, 3), round(drop, 3))


def repetition(texts: list[str]) -> float | None:
    """Share of word 4-grams that repeat an earlier one of the same answer, over answers."""
    total = repeated = 0
    for text in texts:
        words = re.findall(r"\w+", text.lower())
        grams = [tuple(words[i:i + 4]) for i in range(len(words) - 3)]
        total += len(grams)
        repeated += len(grams) - len(set(grams))
    return round(repeated / total, 3) if total else None


@dataclass
class Drift:
    interior_kl: float  # median token KL(base || candidate), answer edges left out
    ppl_base: float  # perplexity of the whole reference answers
    ppl_candidate: float


def reference_drift(model, tok, items: list[tuple[list[dict], str]], adapter: str,
                    batch: int = 2) -> Drift:
    """One base and one candidate pass over the reference answers (logits at answer
    positions only): the interior KL and both perplexities."""
    import torch
    import torch.nn.functional as F

    kls, nll, count = [], [0.0, 0.0], 0
    with torch.inference_mode():
        for chunk, ids, first, logits in answer_batches(model, tok, items, 1024, batch):
            base, cand = (F.log_softmax(logits(v), -1) for v in (None, adapter))
            # [batch, positions]: KL(base || candidate) of the next-token distributions
            kl = F.kl_div(cand, base, log_target=True, reduction="none").sum(-1)
            for row, (x, start) in enumerate(chunk):
                lo, hi = start - 1 - first, len(x) - 1 - first  # this answer's positions
                target = ids[row, first + 1 + lo:first + 1 + hi, None]
                for side, logp in enumerate((base, cand)):
                    nll[side] -= float(logp[row, lo:hi].gather(-1, target).sum())
                count += hi - lo
                if hi - lo > 2 * EDGE_TOKENS:
                    kls.append(kl[row, lo + EDGE_TOKENS:hi - EDGE_TOKENS])
            del base, cand, kl
    median = float(torch.cat(kls).median()) if kls else 0.0
    return Drift(round(median, 5), round(math.exp(nll[0] / max(1, count)), 4),
                 round(math.exp(nll[1] / max(1, count)), 4))
