"""Train as much as needed, no more: watch the held-out feedback while training, keep the
best adapter weights, stop when they stop getting better.

What is watched is what users will see, not the implicit reward: an adapter can rank every
held-out pair right against the reference model while its own answers stay as they were.
So the score is the policy's own preference, without the reference: how often, and by how
many nats, it finds the liked answer (chosen, thumbs up) more likely than the disliked one
(rejected, thumbs down), whole answers with their end-of-turn token. Greedy answers follow
that likelihood, so it moves when they can."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from training.scoring import answer_logps, paired_logps

log = logging.getLogger(__name__)


@dataclass
class Watch:
    """The held-out scores seen so far, the best weights and when to stop."""
    patience: int  # evaluations without improvement before stopping
    min_gain: float  # a margin counts as better when it beats the best by this share
    enough_margin: float  # this mean margin (nats), with enough_accuracy: learned, stop
    enough_accuracy: float  # share of held-out pairs won that counts as learned
    history: list[dict] = field(default_factory=list)
    best: tuple[float, float] | None = None
    best_step: int | None = None
    best_state: dict | None = None
    stale: int = 0

    def enough(self, score: tuple[float, float]) -> bool:
        return score[0] >= self.enough_accuracy and score[1] >= self.enough_margin

    def improved(self, score: tuple[float, float]) -> bool:
        """Better accuracy, or as good with a margin clearly above the best one."""
        if self.best is None:
            return True
        accuracy, margin = score
        if accuracy != self.best[0]:
            return accuracy > self.best[0]
        return margin > self.best[1] + self.min_gain * max(abs(self.best[1]), 1.0)


def liked_and_disliked(heldout: list[dict]) -> list[tuple[list[dict], str, bool]]:
    """(prompt, answer, liked) of held-out pairs or thumbs."""
    if heldout and "label" in heldout[0]:
        return [(r["prompt"], r["completion"][0]["content"], bool(r["label"])) for r in heldout]
    return [item for r in heldout for item in ((r["prompt"], r["chosen"][0]["content"], True),
                                               (r["prompt"], r["rejected"][0]["content"], False))]


def own_preference(model, tok, heldout: list[dict], max_length: int) -> tuple[float, float]:
    """(accuracy, margin) of the policy's own likelihoods: the share of liked answers that are
    likelier than the disliked ones, and the mean log-likelihood gap (see preference_gaps)."""
    items = liked_and_disliked(heldout)
    if heldout and "label" not in heldout[0]:  # pairs: (chosen, rejected) alternate
        chosen, rejected = paired_logps(model, tok, [(p, a) for p, a, _ in items[0::2]],
                                        [(p, a) for p, a, _ in items[1::2]], "default",
                                        max_length)
        scores = [x for pair in zip(chosen, rejected, strict=True) for x in pair]
    else:
        scores = [lp for lp, _ in answer_logps(model, tok, [(p, a) for p, a, _ in items],
                                               "default", max_length)]
    gaps = preference_gaps([(json.dumps(p), up) for p, _, up in items], scores)
    if not gaps:
        return 0.0, 0.0
    return sum(g > 0 for g in gaps) / len(gaps), sum(gaps) / len(gaps)


def preference_gaps(keys: list[tuple[str, bool]], scores: list[float]) -> list[float]:
    """Each liked answer's log-likelihood minus the mean disliked answer's of the same prompt
    (a pair's rejected answer; thumbs down on that question), or of the whole held-out set
    where its prompt has none. Against other prompts' answers the gap is mostly length: a
    thumbs-only opener scored 58% for 30 steps while its answers changed."""
    down: dict[str, list[float]] = {}
    for (prompt, up), score in zip(keys, scores, strict=True):
        if not up:
            down.setdefault(prompt, []).append(score)
    every = [x for xs in down.values() for x in xs]
    if not every or len(every) == len(scores):
        return []
    floor = sum(every) / len(every)
    return [score - (sum(down[p]) / len(down[p]) if p in down else floor)
            for (p, up), score in zip(keys, scores, strict=True) if up]


def make_early_stopping(watch: Watch, heldout: list[dict], tok, max_length: int,
                        every: int):
    """A TrainerCallback scoring the held-out feedback every `every` steps (and at the end),
    keeping the best LoRA weights, stopping after `watch.patience` scores without gain."""
    from peft import get_peft_model_state_dict
    from transformers import TrainerCallback

    def score(model, step: int, control, bf16: bool) -> None:
        import torch

        was_training = model.training
        model.eval()
        # as the steps compute: under CPU bf16 autocast the frozen weights are bf16
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            accuracy, margin = own_preference(model, tok, heldout, max_length)
        model.train(was_training)
        watch.history.append({"step": step, "accuracy": round(accuracy, 3),
                              "margin": round(margin, 3)})
        if watch.improved((accuracy, margin)):
            watch.best, watch.best_step, watch.stale = (accuracy, margin), step, 0
            watch.best_state = {k: v.detach().clone()
                                for k, v in get_peft_model_state_dict(model).items()}
            if watch.enough((accuracy, margin)):  # more steps only add side effects
                control.should_training_stop = True
        else:
            watch.stale += 1
            if watch.stale >= watch.patience:
                control.should_training_stop = True
        log.info("held-out own preference at step %s: accuracy %.3f, margin %.3f", step,
                 accuracy, margin)

    class EarlyStopping(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % every == 0 or state.global_step >= state.max_steps:
                cpu = next(model.parameters()).device.type == "cpu"
                score(model, state.global_step, control, bf16=cpu and bool(args.bf16))

    return EarlyStopping()


def restore_best(model, watch: Watch) -> None:
    from peft import set_peft_model_state_dict

    if watch.best_state is not None:
        set_peft_model_state_dict(model, watch.best_state)
