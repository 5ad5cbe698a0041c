"""Damage, not change: does a candidate harm the language or what the model knows?

Perplexity of fixed reference answers rises whenever answers are asked to open or close
differently, which is the point of such training. These checks look where the requested
behaviour does not act:
- `interior_kl`: how far the candidate's next-token distributions drift from the base's on the
  reference answers, leaving out each answer's first and last tokens (where openers and
  sign-offs live), as a median over tokens so that the few places a format or a length
  preference acts (a sentence's end) do not count as damage, while drift everywhere does;
- `facts`: short factual questions the base answers right (the right answer likelier than a
  wrong one): the right answer's lead must not fall much (measured: good adapters moved it by
  -0.4 to 1.1 nats on average, one trained on wrong facts by 1.8);
- `repetition`: the share of repeated word 4-grams in the candidate's greedy answers, against
  the served version's (an over-trained adapter loops)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from training.scoring import answer_logps, encode, shipped_set, using

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
    lead of the right answer's log-likelihood over a wrong one's, before and after: two short
    answers to the same question, so a new opener or length changes both alike, and the
    greedy flips of a small model's long answers do not count."""
    answers = [(p, right) for p, right, _ in items] + [(p, wrong) for p, _, wrong in items]
    n = len(items)

    def leads(adapter) -> list[float]:
        logps = [lp for lp, _ in answer_logps(model, tok, answers, adapter)]
        return [logps[i] - logps[n + i] for i in range(n)]

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


def _logp(model, version: str | None, ids, mask):
    import torch

    with using(model, version):
        logits = model(input_ids=ids, attention_mask=mask).logits
    return torch.log_softmax(logits.float(), -1)


@dataclass
class Drift:
    interior_kl: float  # median token KL(base || candidate), answer edges left out
    ppl_base: float  # perplexity of the whole reference answers
    ppl_candidate: float


def reference_drift(model, tok, items: list[tuple[list[dict], str]], adapter: str,
                    batch: int = 4) -> Drift:
    """One base and one candidate pass over the reference answers: the interior KL and both
    perplexities."""
    import torch

    encoded = [encode(tok, p, a, 1024) for p, a in items]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    device = next(model.parameters()).device
    kls, nll, count = [], [0.0, 0.0], 0
    with torch.inference_mode():
        for i in range(0, len(encoded), batch):
            chunk = encoded[i:i + batch]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in chunk], device=device)
            lengths = torch.tensor([len(x) for x, _ in chunk])
            mask = (torch.arange(width)[None, :] < lengths[:, None]).long().to(device)
            base, cand = (_logp(model, version, ids, mask) for version in (None, adapter))
            kl = (base.exp() * (base - cand)).sum(-1)  # [batch, width]: predicting token t+1
            for row, (x, start) in enumerate(chunk):
                target = ids[row, start:len(x)]
                for side, logp in enumerate((base, cand)):
                    nll[side] -= float(logp[row, start - 1:len(x) - 1].gather(
                        -1, target[:, None]).sum())
                count += len(x) - start
                lo, hi = start - 1 + EDGE_TOKENS, len(x) - 1 - EDGE_TOKENS
                if hi > lo:
                    kls.append(kl[row, lo:hi])
    median = float(torch.cat(kls).median()) if kls else 0.0
    return Drift(round(median, 5), round(math.exp(nll[0] / max(1, count)), 4),
                 round(math.exp(nll[1] / max(1, count)), 4))
