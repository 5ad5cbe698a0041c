"""Training: real DPO/KTO steps on the shipped model and the runner process (datasets, caps,
split and the method choice: tests/test_training_data.py), and the helpers both share."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def import_pairs(store, triples, user="admin", source="import") -> list[int]:
    """(question, chosen, rejected) triples stored as imported preferences."""
    return [store.record_preference(q, c, r, user, source=source) for q, c, r in triples]


def short_pairs(n: int, offset: int = 0) -> list[tuple[str, str, str]]:
    out = []
    for i in range(offset, offset + n):
        a = f"{i} plus {i} is {2 * i}."
        out.append((f"What is {i} plus {i}?", "Short answer: " + a, a))
    return out


def rated_answers(store, n_up: int, n_down: int, user="u1") -> None:
    conv = store.create_conversation(user)
    for i in range(n_up + n_down):
        prompt = [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": f"Name a colour ({i})."}]
        good = i < n_up
        mid = store.record_message(conv, "assistant", "Blue." if good else "I cannot say.",
                                   prompt=prompt)
        store.record_rating(mid, user, 1 if good else -1)


def lora_and_base(model) -> tuple[dict, dict]:
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    lora = {n: v for n, v in params.items() if "lora_" in n}
    base = {n: v for n, v in params.items() if "lora_" not in n}
    return lora, base


# ---------------------------------------------------------------------------- real TRL steps


def base_path(cfg) -> str:
    from chat.engine.loading import resolve_base_model

    return resolve_base_model(cfg)


def assert_lora_moved_base_untouched(cfg, trainer) -> None:
    from transformers import AutoModelForCausalLM

    lora = {n: p for n, p in trainer.model.named_parameters() if "lora_B" in n}
    assert lora and any(float(p.abs().max()) > 0 for p in lora.values())  # B starts at zero
    trained = {k.replace(".base_layer", ""): v for k, v in
               trainer.model.get_base_model().state_dict().items() if "lora_" not in k}
    # loaded as training loads it (bf16 on a GPU), so only training could make them differ
    dtype = trained["model.embed_tokens.weight"].dtype
    fresh = AutoModelForCausalLM.from_pretrained(base_path(cfg), dtype=dtype).state_dict()
    assert set(fresh) <= set(trained)
    # frozen linears kept in bf16 under CPU autocast (training/memory.py): compare as kept
    changed = [k for k, v in fresh.items()
               if not (trained[k].cpu() == v.to(trained[k].dtype)).all()]
    assert changed == []


def tiny_settings(**optim):
    from training.config import TrainSettings

    return TrainSettings.from_dict({"optim": {"max_steps": 2, "batch_size": 2,
                                              "max_length": 96, **optim},
                                    "lora": {"r": 4, "alpha": 8}})


def test_dpo_steps_move_lora_not_base(cfg, store, tmp_path):
    from training.datasets import dpo_rows
    from training.trainers import Hooks, train_dpo

    import_pairs(store, short_pairs(4))
    events = []
    hooks = Hooks(on_log=lambda step, total, logs: events.append((step, total, logs)))
    metrics = train_dpo(base_path(cfg), dpo_rows(store, "S"), tiny_settings(), tmp_path / "a",
                        hooks)
    assert metrics["steps"] == 2 and (tmp_path / "a" / "adapter_model.safetensors").exists()
    assert [e[0] for e in events if "loss" in e[2]] == [1, 2]
    assert "rewards/accuracies" in events[0][2]
    assert_lora_moved_base_untouched(cfg, hooks.trainer)


def test_kto_steps_move_lora_not_base(cfg, store, tmp_path):
    from training.datasets import kto_rows
    from training.trainers import Hooks, train_kto

    rated_answers(store, 3, 3)
    hooks = Hooks()
    metrics = train_kto(base_path(cfg), kto_rows(store), tiny_settings(batch_size=4),
                        tmp_path / "k", hooks)
    assert metrics["steps"] == 2 and metrics["desirable_weight"] == 1.0
    assert_lora_moved_base_untouched(cfg, hooks.trainer)


def test_cancel_request_stops_a_run(cfg, store, tmp_path):
    from training.datasets import dpo_rows
    from training.trainers import Cancelled, Hooks, train_dpo

    import_pairs(store, short_pairs(4))
    hooks = Hooks(should_stop=lambda: True)
    with pytest.raises(Cancelled):
        train_dpo(base_path(cfg), dpo_rows(store, "S"), tiny_settings(max_steps=50),
                  tmp_path / "c", hooks)
    assert hooks.trainer.state.global_step == 1
    assert not (tmp_path / "c" / "adapter_model.safetensors").exists()


def test_the_wall_time_cap_ends_training_and_keeps_the_adapter(cfg, store, tmp_path):
    """Spent time is not a cancel: what was trained so far is saved, to be gated."""
    import time

    from training.datasets import dpo_rows
    from training.trainers import Hooks, train_dpo

    import_pairs(store, short_pairs(4))
    hooks = Hooks(deadline=time.monotonic())  # already spent: one step, then stop
    metrics = train_dpo(base_path(cfg), dpo_rows(store, "S"), tiny_settings(max_steps=50),
                        tmp_path / "t", hooks)
    assert metrics["steps"] == 1 and (tmp_path / "t" / "adapter_model.safetensors").exists()
    assert not Hooks(deadline=None).out_of_time()


# ---------------------------------------------------------------------------- the runner process


def make_adapter(cfg, folder: Path, scale: float = 0.0, seed: int = 0) -> Path:
    """A real LoRA on the shipped model: zero B (= the base) or random weights * scale."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_path(cfg))
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, init_lora_weights=scale == 0,
                                            target_modules=["q_proj", "v_proj"]))
    if scale:
        with torch.no_grad():
            for n, p in peft.named_parameters():
                if "lora_" in n:
                    p.mul_(scale)
    peft.save_pretrained(str(folder))
    return folder


def register_adapter(cfg, store, scale=0.0, seed=0, passed=True) -> str:
    from training import registry

    cfg.adapters_dir.mkdir(parents=True, exist_ok=True)
    tmp = make_adapter(cfg, cfg.adapters_dir / f".tmp-test-{seed}", scale, seed)
    return registry.register(store, cfg.adapters_dir, tmp, method="dpo", base_model=cfg.base_model,
                             metrics={}, meta={}, passed=passed, run_id=None)


def test_killed_training_process_changes_nothing_served(cfg, store):
    from chat.engine.engine import GenParams
    from chat.runtime import build_runtime
    from training import registry, runs

    v1 = register_adapter(cfg, store)
    registry.activate(store, v1)
    import_pairs(store, short_pairs(24))
    rt = build_runtime(cfg)
    params = GenParams(max_new_tokens=8)
    before = rt.service.ask("What is 3 plus 3?", "u", params=params)
    run_id = runs.create_run(store, tiny_settings(max_steps=500), "test")
    proc = runs.spawn(cfg, run_id)
    deadline = time.time() + 300
    while not store.one("SELECT id FROM training_events WHERE run_id = ?", (run_id,)):
        assert proc.poll() is None and time.time() < deadline, runs.log_path(cfg, run_id)
        time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = runs.get_run(store, run_id)
    assert run["status"] == "failed" and "died" in run["error"]
    assert registry.active_version(store) == v1
    assert [r["version"] for r in registry.list_adapters(store)] == [v1]
    assert sorted(p.name for p in cfg.adapters_dir.iterdir() if not p.name.startswith(".")) \
        == [v1]
    after = rt.service.ask("What is 3 plus 3?", "u", params=params)
    assert (after.adapter_version, after.text) == (before.adapter_version, before.text) \
        == (v1, before.text)


def test_train_cli_refuses_without_enough_data(cfg, store):
    import_pairs(store, short_pairs(2))
    proc = subprocess.run([sys.executable, "launch.py", "train", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "preference pairs" in proc.stderr
    assert store.counts()["training_runs"] == 0


def test_train_cli_json_contract(cfg, store):
    """The whole loop in its own process on the real model: train, gate, register."""
    import_pairs(store, short_pairs(12))
    proc = subprocess.run([sys.executable, "launch.py", "train", "--method", "dpo",
                           "--max-steps", "2", "--batch-size", "4", "--no-activate", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"run_id", "status", "method", "adapter_version", "n_train", "n_heldout", "gate",
            "activated"} <= set(out)
    assert out["method"] == "dpo" and out["n_train"] + out["n_heldout"] == 12
    assert out["activated"] is False and out["gate"]["pref_accuracy_active"] is None
    assert set(out["gate"]) >= {"passed", "pref_accuracy", "ppl_ratio"}
    from training import registry

    row = registry.get(store, out["adapter_version"])
    assert row["status"] == ("candidate" if out["gate"]["passed"] else "rejected")
    meta = json.loads((Path(row["path"]) / "meta.json").read_text())
    assert meta["method"] == "dpo" and len(meta["feedback_ids"]) == out["n_train"]
    events = store.query("SELECT step FROM training_events WHERE run_id = ?", (out["run_id"],))
    assert [e["step"] for e in events][:2] == [1, 2]
