"""RLHF, small and honest: a reward model (TRL RewardTrainer + LoRA sequence-classification
head) trained on the pairs, then RLOO on prompts from real conversations scored by it."""

from __future__ import annotations

from pathlib import Path

from chat.errors import NotEnoughData
from chat.profiles import active_profile
from chat.sanitize import special_token_pattern
from training.config import TrainSettings
from training.datasets import Split, conversation_prompts, inert_text, trl_columns
from training.scoring import using
from training.trainers import (
    Hooks,
    _finish,
    common_args,
    device_and_dtype,
    load_policy,
    lora_config,
    make_callback,
)


def train_reward_model(base_path: str, rows: list[dict], s: TrainSettings, out_dir: Path,
                       hooks: Hooks):
    """Bradley-Terry reward model on (prompt, chosen, rejected); returns (model, tok, metrics)."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    device, dtype = device_and_dtype(s.optim.precision)
    tok = AutoTokenizer.from_pretrained(base_path)
    tok.pad_token = tok.pad_token or tok.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(
        base_path, num_labels=1, dtype=dtype).to(device)
    model.config.pad_token_id = tok.pad_token_id
    args = RewardConfig(**common_args(s, out_dir / "work", lr=s.rlhf.reward_learning_rate,
                                      epochs=s.rlhf.reward_epochs),
                        max_length=s.optim.max_length)
    trainer = RewardTrainer(
        model=model, args=args, processing_class=tok, peft_config=lora_config(s, "SEQ_CLS"),
        train_dataset=Dataset.from_list(trl_columns(rows, ("prompt", "chosen", "rejected"))),
        callbacks=[_callback(hooks, "reward")])
    metrics = _finish(trainer, hooks, out_dir / "reward")
    return trainer.model.eval(), tok, metrics


def _callback(hooks: Hooks, phase: str):
    return make_callback(Hooks(hooks.on_log, hooks.should_stop, phase))


def reward_scorer(model, tok):
    """score(prompts, completions) -> list[float] with the reward model (no gradients)."""
    import torch

    def text_of(c):
        return c[-1]["content"] if isinstance(c, list) else str(c)

    def score(prompts, completions, **_) -> list[float]:
        texts = [tok.apply_chat_template(list(p) + [{"role": "assistant",
                                                     "content": text_of(c)}], tokenize=False)
                 for p, c in zip(prompts, completions, strict=True)]
        batch = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=512)
        device = next(model.parameters()).device
        with torch.inference_mode():
            out = model(**{k: v.to(device) for k, v in batch.items()}).logits[:, 0]
        return [float(x) for x in out.float().cpu()]

    return score


def train_rlhf(base_path: str, data: Split, s: TrainSettings, out_dir: Path, hooks: Hooks,
               store, cfg):
    """Reward model, then RLOO; returns (metrics, gate reward function)."""
    from datasets import Dataset
    from trl import RLOOConfig, RLOOTrainer

    rm, rm_tok, rm_metrics = train_reward_model(base_path, data.train, s, out_dir, hooks)
    score = reward_scorer(rm, rm_tok)

    policy, tok = load_policy(base_path, s.optim.precision)
    prompts = [inert_text(p, special_token_pattern(tok)) for p in  # as data.train already is
               conversation_prompts(store, active_profile(store, cfg), s.rlhf.max_prompts)]
    prompts += [r["prompt"] for r in data.train][: max(0, s.rlhf.max_prompts - len(prompts))]
    if len(prompts) < 2:
        raise NotEnoughData("RLHF needs prompts from real conversations or pairs")
    g = s.rlhf.num_generations
    common = common_args(s, out_dir / "work", lr=s.rlhf.rl_learning_rate,
                         max_steps=s.rlhf.rl_steps)
    common["per_device_train_batch_size"] = g * 2  # two prompts x g samples per step
    # beta=0: no KL term, so no reference model is kept (cheap on CPU); the gate guards drift
    args = RLOOConfig(**common, num_generations=g,
                      max_completion_length=s.rlhf.max_completion_length, beta=0.0)
    trainer = RLOOTrainer(
        model=policy, reward_funcs=score, args=args, processing_class=tok,
        peft_config=lora_config(s), train_dataset=Dataset.from_list([{"prompt": p}
                                                                     for p in prompts]),
        callbacks=[_callback(hooks, "rloo")])
    metrics = _finish(trainer, hooks, out_dir)
    heldout_prompts = [r["prompt"] for r in data.heldout][:8]

    def gate_reward(model, gtok, adapter) -> float:
        answers = _greedy(model, gtok, heldout_prompts, adapter, s.rlhf.max_completion_length)
        scores = score(heldout_prompts, answers)
        return sum(scores) / max(1, len(scores))

    return {"reward_model": rm_metrics, "rloo": metrics, "n_prompts": len(prompts)}, gate_reward


def _greedy(model, tok, prompts, adapter, max_new_tokens: int) -> list[str]:
    import torch

    out = []
    device = next(model.parameters()).device
    with torch.inference_mode(), using(model, adapter):
        for p in prompts:
            ids = tok.apply_chat_template(p, add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)["input_ids"].to(device)
            gen = model.generate(input_ids=ids, max_new_tokens=max_new_tokens, do_sample=False)
            out.append(tok.decode(gen[0, ids.shape[1]:], skip_special_tokens=True))
    return out
