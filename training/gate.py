"""The eval gate: does the candidate learn the preference (held-out implicit-reward
accuracy), show it to users (training/visible.py), and do no damage (training/damage.py)?
Plus, for rlhf, the reward model's view."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from training import damage
from training.config import GateSettings
from training.scoring import answer_logps, greedy_answers, paired_logps, reference_messages
from training.visible import Visible, measure, sides


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
    # damage (training/damage.py)
    interior_kl: float | None = None
    facts_right_base: int = 0
    facts_kept: float | None = None
    facts_lead_drop: float | None = None
    repetition: float | None = None
    repetition_served: float | None = None
    reasons: list[str] = field(default_factory=list)
    verdict: str | None = None  # passed | failed | no visible change (None: from `passed`)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["verdict"] = self.verdict or ("passed" if self.passed else "failed")
        return out


def visible_change(model, tok, heldout: list[dict], s: GateSettings, candidate: str,
                   served: str | None) -> Visible | None:
    """Greedy held-out answers of the candidate and of the served version, judged."""
    liked, disliked = sides(heldout)
    # room for the longer side, so that neither version's answers are cut to look like the
    # other's (a preference for short answers is only seen if long ones can be long)
    longest = max(len(tok(t, add_special_tokens=False)["input_ids"]) for t in liked + disliked)
    budget = min(s.visible_max_tokens, longest + 8)

    answers: dict = {}

    def answer(prompts, adapter):  # both versions answer in one batch, on the first call
        if adapter not in answers:
            versions = [candidate, served]
            answers.update(zip(versions, greedy_answers(model, tok, prompts, versions, budget),
                               strict=True))
        return answers[adapter]

    return measure(heldout, answer, candidate, served, s.visible_prompts)


def preference_accuracy(model, tok, pairs: list[dict], adapter: str,
                        base: dict | None = None) -> tuple[float, dict]:
    """Share of pairs whose implicit reward (policy - reference log-prob) prefers chosen."""
    chosen = [(r["prompt"], r["chosen"][0]["content"]) for r in pairs]
    rejected = [(r["prompt"], r["rejected"][0]["content"]) for r in pairs]
    if base is None:
        base = {"logps": paired_logps(model, tok, chosen, rejected, None)}
    pol = paired_logps(model, tok, chosen, rejected, adapter)
    (ref_c, ref_r), (pol_c, pol_r) = base["logps"], pol
    wins = sum(pc - rc > pr - rr for pc, rc, pr, rr in zip(pol_c, ref_c, pol_r, ref_r,
                                                           strict=True))
    return wins / max(1, len(pairs)), base


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
    drift = damage.reference_drift(model, tok, ref, candidate)
    result = GateResult(False, acc, acc_active, drift.ppl_base, drift.ppl_candidate,
                        round(drift.ppl_candidate / drift.ppl_base, 4), len(heldout), kind,
                        interior_kl=drift.interior_kl)
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
        result.repetition = damage.repetition(seen.answers_candidate)
        result.repetition_served = damage.repetition(seen.answers_served)
    _check_facts(model, tok, result, candidate, system_prompt)
    result.reasons = _reasons(result, settings)
    result.passed = not result.reasons
    result.verdict = _verdict(result, settings)
    return result


def _check_facts(model, tok, result: GateResult, candidate: str, system_prompt) -> None:
    facts = damage.facts_kept(model, tok, damage.fact_items(system_prompt), candidate)
    result.facts_right_base, result.facts_kept = facts.known_base, facts.kept
    result.facts_lead_drop = facts.lead_drop


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
    out += _damage_reasons(r, s)
    if r.reward_candidate is not None and r.reward_active is not None \
            and r.reward_candidate < r.reward_active - s.reward_tolerance:
        out.append(f"reward model scores the candidate {r.reward_candidate:.3f} below the "
                   f"active's {r.reward_active:.3f}")
    return out + _visible_reasons(r, s)


def _damage_reasons(r: GateResult, s: GateSettings) -> list[str]:
    out = []
    if r.interior_kl is not None and r.interior_kl > s.max_interior_kl:
        out.append(f"the language drifted: median token KL {r.interior_kl:.4f} from the base "
                   f"inside the reference answers (bound {s.max_interior_kl})")
    if r.facts_lead_drop is not None and r.facts_lead_drop > s.max_facts_drop:
        out.append(f"facts lost: the right answers' lead over wrong ones fell by "
                   f"{r.facts_lead_drop:.2f} nats on average (bound {s.max_facts_drop}); "
                   f"{r.facts_kept:.0%} of the {r.facts_right_base} facts the base gets right "
                   "are still right")
    if r.repetition is not None and r.repetition_served is not None \
            and r.repetition > r.repetition_served + s.max_repetition_rise:
        out.append(f"answers repeat themselves: {r.repetition:.0%} of word 4-grams repeated "
                   f"(served now: {r.repetition_served:.0%})")
    return out


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
