"""Shared-prefix DPO forward: same hidden states and LoRA gradients as the plain forward."""

from __future__ import annotations

import torch

from training.shared_prefix import shared_lengths, sharing_prefixes


def tiny_lora_model():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128)
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.2)
    return model.double()  # float64: a real difference cannot hide in rounding noise


def batch():
    """Two pairs, flush-left padded: prompts of 6 and 9 tokens, answers of different lengths
    (the second pair's answers also share their first token)."""
    rows = [[5, 6, 7, 8, 9, 10, 11, 12, 13],              # pair 0 chosen
            [20, 21, 22, 23, 24, 25, 26, 27, 28, 30, 31, 32],  # pair 1 chosen
            [5, 6, 7, 8, 9, 10, 40, 41],                  # pair 0 rejected
            [20, 21, 22, 23, 24, 25, 26, 27, 28, 30, 50]]  # pair 1 rejected
    width = max(map(len, rows))
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


def hidden_and_grads(model, ids, mask):
    model.zero_grad()
    hidden = model.base_model.model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    (hidden * mask[..., None]).pow(2).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return hidden.detach(), grads


def test_shared_lengths_stop_where_the_pair_differs():
    ids, mask = batch()
    assert shared_lengths(ids, mask).tolist() == [6, 10]


def test_shared_forward_matches_the_plain_one_values_and_gradients():
    model = tiny_lora_model()
    ids, mask = batch()
    plain_hidden, plain_grads = hidden_and_grads(model, ids, mask)
    with sharing_prefixes(model):
        assert "forward" in vars(model.base_model.model.model)  # the shared path is in place
        shared_hidden, shared_grads = hidden_and_grads(model, ids, mask)
    valid = mask.bool()
    assert torch.allclose(shared_hidden[valid], plain_hidden[valid], atol=1e-10)
    assert plain_grads and plain_grads.keys() == shared_grads.keys()
    for name, grad in plain_grads.items():
        # forward values are bitwise equal; gradients sum the shared part in another order
        # (measured: <= 1e-7 of the largest entry; a wrong mask or position gives O(1))
        assert (shared_grads[name] - grad).abs().max() <= 1e-6 * grad.abs().max(), name
    # outside the block the model is the plain one again
    assert "forward" not in vars(model.base_model.model.model)


def test_real_dpo_step_logs_the_same_as_plain_trl(cfg, monkeypatch):
    """One fp32 DPO step on the shipped model: loss, gradient norm and log-probs as TRL's."""
    from trl import DPOTrainer

    from chat.engine.loading import resolve_base_model
    from training import trainers
    from training.bench import _pairs
    from training.config import TrainSettings

    def first_step(tmp: str) -> dict:
        s = TrainSettings()
        # the whole answers: the pair-focused loss (training/pair_focus.py) is another loss
        s.optim.max_steps, s.optim.precision, s.optim.loss_on = 1, "fp32", "whole"
        logs: list[dict] = []
        trainers.train_dpo(resolve_base_model(cfg), _pairs(8), s, cfg.data_dir / tmp,
                           trainers.Hooks(on_log=lambda step, total, log: logs.append(log)))
        return next(log for log in logs if "loss" in log)

    ours = first_step("ours")
    monkeypatch.setattr(trainers, "shared_prefix_dpo_trainer", lambda focus: DPOTrainer)
    plain = first_step("plain")
    for key in ("loss", "grad_norm", "logps/chosen", "logps/rejected"):
        assert abs(ours[key] - plain[key]) <= 1e-4 * max(1.0, abs(plain[key])), key


def test_keeping_the_shared_start_leaves_the_dpo_loss_as_it_is(cfg):
    """loss_on all-but-suffix vs difference, without the SFT term: the pairs' shared start
    is the same text in the same context on both sides, so the DPO loss and its gradients
    do not change (only the SFT term, off here, would see those tokens)."""
    from chat.engine.loading import resolve_base_model
    from training import trainers
    from training.config import TrainSettings

    def pair(i: int) -> dict:
        answer = f"The number {i} is a whole number. It comes after {i - 1}."
        return {"prompt": [{"role": "user", "content": f"What is {i}?"}],
                "chosen": [{"role": "assistant", "content": answer + "\n\nHope this helps!"}],
                "rejected": [{"role": "assistant", "content": answer}]}

    def first_step(loss_on: str) -> dict:
        s = TrainSettings()
        s.optim.max_steps, s.optim.precision, s.optim.patience = 1, "fp32", 0
        s.optim.loss_on, s.optim.sft_weight = loss_on, 0.0
        logs: list[dict] = []
        trainers.train_dpo(resolve_base_model(cfg), [pair(i) for i in range(2, 10)], s,
                           cfg.data_dir / loss_on,
                           trainers.Hooks(on_log=lambda step, total, log: logs.append(log)))
        return next(log for log in logs if "loss" in log)

    kept, focused = first_step("all-but-suffix"), first_step("difference")
    for key in ("loss", "grad_norm"):
        assert abs(kept[key] - focused[key]) <= 1e-4 * max(1.0, abs(focused[key])), key
    # while the log-probs summed over the masked tokens do differ: the start is in one mask
    assert abs(kept["logps/chosen"] - focused["logps/chosen"]) > 1.0
