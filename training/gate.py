"""The eval gate: held-out preference accuracy, reference perplexity, reward-model check."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from training.config import GateSettings
from training.visible import Visible, measure, sides

REFERENCE_SET = Path(__file__).with_name("reference.jsonl")


@dataclass
class GateResult:
    passed: bool
    pref_accuracy: float | None
    pref_accuracy_active: float | None
    ppl_base: float
    ppl_candidate: float
    ppl_ratio: float
    n_heldout: int
    pref_kind: str = "pairs"  # "pairs" (chosen > rejected) or "labels" (KTO thumbs)
    reward_candidate: float | None = None
    reward_active: float | None = None
    # greedy held-out answers that read like the liked feedback: candidate vs served now
    visible_share: float | None = None
    visible_share_served: float | None = None
    visible_prompts: int = 0
    visible_examples: list[dict] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    verdict: str | None = None  # passed | failed | no visible change (None: from `passed`)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["verdict"] = self.verdict or ("passed" if self.passed else "failed")
        return out


def reference_messages(system_prompt: str | None) -> list[tuple[list[dict], str]]:
    """The fixed general-chat reference set shipped with the project, as (prompt, answer)."""
    out = []
    for line in REFERENCE_SET.read_text().splitlines():
        item = json.loads(line)
        prompt = [{"role": "user", "content": item["question"]}]
        if system_prompt:
            prompt = [{"role": "system", "content": system_prompt}] + prompt
        out.append((prompt, item["answer"]))
    return out


# ---------------------------------------------------------------------------- log-probs


@contextmanager
def using(model, adapter: str | None):
    """Run `model` as the base (adapter None) or with one named LoRA adapter."""
    if adapter is None:
        with model.disable_adapter():
            yield
        return
    model.set_adapter(adapter)
    yield


def _encode(tok, prompt: list[dict], answer: str, max_length: int) -> tuple[list[int], int]:
    """Token ids of prompt + answer and where the answer starts (answer kept, prompt cut)."""
    p = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                return_dict=True)["input_ids"]
    full = tok.apply_chat_template(prompt + [{"role": "assistant", "content": answer}],
                                   tokenize=True, return_dict=True)["input_ids"]
    p, full = list(p), list(full)
    if full[:len(p)] != p:  # templates that rewrite earlier turns: fall back to plain concat
        full = p + list(tok(answer, add_special_tokens=False)["input_ids"])
    excess = max(0, len(full) - max_length)
    return full[excess:], max(1, len(p) - excess)


def answer_logps(model, tok, items: list[tuple[list[dict], str]], adapter: str | None,
                 max_length: int = 512, batch: int = 8) -> list[tuple[float, int]]:
    """(sum of answer-token log-probs, answer token count) for each (prompt, answer)."""
    import torch

    encoded = [_encode(tok, p, a, max_length) for p, a in items]
    device = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    out: list[tuple[float, int]] = []
    with torch.inference_mode(), using(model, adapter):
        for i in range(0, len(encoded), batch):
            chunk = encoded[i:i + batch]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in chunk], device=device)
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x, _ in chunk],
                                device=device)
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
            tok_logp = logp[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
            for row, (x, start) in enumerate(chunk):
                span = tok_logp[row, start - 1:len(x) - 1]
                out.append((float(span.sum()), int(span.numel())))
    return out


def greedy_answers(model, tok, prompts: list[list[dict]], adapter: str | None,
                   max_new_tokens: int) -> list[str]:
    """Greedy answers of one version to several prompts, in one left-padded batch."""
    import torch

    texts = [tok.apply_chat_template(p, add_generation_prompt=True, tokenize=False)
             for p in prompts]
    side, tok.padding_side = tok.padding_side, "left"
    try:
        batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tok.padding_side = side
    batch = batch.to(next(model.parameters()).device)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    with torch.inference_mode(), using(model, adapter):
        out = model.generate(**batch, do_sample=False, max_new_tokens=max_new_tokens,
                             pad_token_id=pad)
    width = batch["input_ids"].shape[1]
    return [tok.decode(row[width:], skip_special_tokens=True).strip() for row in out]


def visible_change(model, tok, heldout: list[dict], s: GateSettings, candidate: str,
                   served: str | None) -> Visible | None:
    """Greedy held-out answers of the candidate and of the served version, judged."""
    liked, disliked = sides(heldout)
    # room for the longer side, so that neither version's answers are cut to look like the
    # other's (a preference for short answers is only seen if long ones can be long)
    longest = max(len(tok(t, add_special_tokens=False)["input_ids"]) for t in liked + disliked)
    budget = min(s.visible_max_tokens, longest + 8)

    def answer(prompts, adapter):
        return greedy_answers(model, tok, prompts, adapter, budget)

    return measure(heldout, answer, candidate, served, s.visible_prompts)


# ---------------------------------------------------------------------------- metrics


def preference_accuracy(model, tok, pairs: list[dict], adapter: str,
                        base: dict | None = None) -> tuple[float, dict]:
    """Share of pairs whose implicit reward (policy - reference log-prob) prefers chosen."""
    items = [(r["prompt"], r["chosen"][0]["content"]) for r in pairs]
    items += [(r["prompt"], r["rejected"][0]["content"]) for r in pairs]
    if base is None:
        base = {"logps": [lp for lp, _ in answer_logps(model, tok, items, None)]}
    pol = [lp for lp, _ in answer_logps(model, tok, items, adapter)]
    n = len(pairs)
    wins = sum((pol[i] - base["logps"][i]) > (pol[n + i] - base["logps"][n + i]) for i in range(n))
    return wins / max(1, n), base


def label_accuracy(model, tok, rows: list[dict], adapter: str,
                   base: dict | None = None) -> tuple[float, dict]:
    """KTO held-out: how well the implicit reward's sign (policy - reference log-prob)
    matches the thumbs; see balanced_sign_accuracy."""
    items = [(r["prompt"], r["completion"][0]["content"]) for r in rows]
    if base is None:
        base = {"logps": [lp for lp, _ in answer_logps(model, tok, items, None)]}
    pol = [lp for lp, _ in answer_logps(model, tok, items, adapter)]
    margins = [p - b for p, b in zip(pol, base["logps"], strict=True)]
    return balanced_sign_accuracy(margins, [bool(r["label"]) for r in rows]), base


def balanced_sign_accuracy(margins: list[float], labels: list[bool]) -> float:
    """Mean of the per-thumb hit rates (up: margin > 0, down: margin < 0); a thumb absent
    from the held-out set is skipped. A tie misses for either thumb and each thumb weighs
    the same, so an adapter that changes nothing scores 0, not the share of thumbs-down
    (which passed the gate whenever most feedback was negative)."""
    hits: dict[bool, list[bool]] = {True: [], False: []}
    for margin, up in zip(margins, labels, strict=True):
        hits[up].append(margin > 0 if up else margin < 0)
    rates = [sum(h) / len(h) for h in hits.values() if h]
    return sum(rates) / max(1, len(rates))


def perplexity(model, tok, items: list[tuple[list[dict], str]], adapter: str | None) -> float:
    scores = answer_logps(model, tok, items, adapter)
    total = sum(lp for lp, _ in scores)
    count = sum(n for _, n in scores)
    return math.exp(-total / max(1, count))


# ---------------------------------------------------------------------------- the gate


def evaluate(model, tok, heldout: list[dict], settings: GateSettings, *,
             candidate: str = "candidate", active: str | None = None,
             system_prompt: str | None = None,
             reward: Callable[[str | None], float] | None = None) -> GateResult:
    """Judge `candidate` (a loaded adapter name) against the base and the `active` adapter."""
    kind = "labels" if heldout and "label" in heldout[0] else "pairs"
    metric = label_accuracy if kind == "labels" else preference_accuracy
    acc = acc_active = None
    if heldout:
        acc, base = metric(model, tok, heldout, candidate)
        if active is not None:
            acc_active, _ = metric(model, tok, heldout, active, base)
    ref = reference_messages(system_prompt)
    ppl_base = perplexity(model, tok, ref, None)
    ppl_cand = perplexity(model, tok, ref, candidate)
    result = GateResult(False, acc, acc_active, round(ppl_base, 4), round(ppl_cand, 4),
                        round(ppl_cand / ppl_base, 4), len(heldout), kind)
    if reward is not None:
        result.reward_candidate = reward(candidate)
        result.reward_active = reward(active)
    seen = None
    if heldout and settings.visible_prompts > 0:
        seen = visible_change(model, tok, heldout, settings, candidate, active)
    if seen is not None:
        result.visible_share, result.visible_share_served = (seen.share_candidate,
                                                             seen.share_served)
        result.visible_prompts, result.visible_examples = seen.n_prompts, seen.examples
    result.reasons = _reasons(result, settings)
    result.passed = not result.reasons
    result.verdict = _verdict(result, settings)
    return result


def _verdict(r: GateResult, s: GateSettings) -> str:
    if r.passed:
        return "passed"
    return "no visible change" if r.reasons == _visible_reasons(r, s) else "failed"


def _visible_reasons(r: GateResult, s: GateSettings) -> list[str]:
    if r.visible_share is None or r.visible_share - r.visible_share_served >= s.min_visible_gain:
        return []
    n = r.visible_prompts
    return [f"no visible change: {round(r.visible_share * n)} of {n} held-out answers read "
            f"like the liked feedback (served now: {round(r.visible_share_served * n)}; "
            f"needs {s.min_visible_gain:.0%} more)"]


def _reasons(r: GateResult, s: GateSettings) -> list[str]:
    """Why the candidate fails (empty: it passes)."""
    out = []
    if r.n_heldout < s.min_heldout or r.pref_accuracy is None:
        out.append(f"only {r.n_heldout} held-out items (need {s.min_heldout})")
    elif r.pref_accuracy < s.min_pref_accuracy:
        out.append(f"preference accuracy {r.pref_accuracy:.2f} < {s.min_pref_accuracy:.2f}")
    if r.pref_accuracy_active is not None and r.pref_accuracy is not None \
            and r.pref_accuracy < r.pref_accuracy_active:
        out.append(f"preference accuracy {r.pref_accuracy:.2f} below the active adapter's "
                   f"{r.pref_accuracy_active:.2f}")
    if r.ppl_ratio > s.max_ppl_ratio:
        out.append(f"reference perplexity rose {r.ppl_ratio:.2f}x (bound {s.max_ppl_ratio})")
    if r.reward_candidate is not None and r.reward_active is not None \
            and r.reward_candidate < r.reward_active - s.reward_tolerance:
        out.append(f"reward model scores the candidate {r.reward_candidate:.3f} below the "
                   f"active's {r.reward_active:.3f}")
    return out + _visible_reasons(r, s)


def load_for_gate(base_path: str, candidate_folder: Path, active_folder: Path | None,
                  device: str = "cpu", dtype=None):
    """The base model with the candidate (and the active adapter) loaded from safetensors."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype).to(device)
    model = PeftModel.from_pretrained(base, str(candidate_folder), adapter_name="candidate",
                                      use_safetensors=True)
    if active_folder is not None:
        model.load_adapter(str(active_folder), adapter_name="active", use_safetensors=True)
    return model.eval()
