"""`bench train`: DPO pairs/s of the project's trainer vs TRL's DPOTrainer defaults, same LoRA,
same pairs, same run."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from chat.engine.loading import resolve_base_model
from training.config import TrainSettings
from training.runner import peak_rss_mib
from training.trainers import (
    Hooks,
    common_args,
    device_and_dtype,
    load_policy,
    lora_config,
    train_dpo,
)


def _pairs(n: int = 64) -> list[dict]:
    topics = ["tea", "rivers", "maps", "owls", "glass", "kites", "salt", "clocks"]
    return [{"prompt": [{"role": "user", "content": f"Tell me one fact about {t} (#{i})."}],
             "chosen": [{"role": "assistant", "content": f"A clear, correct fact about {t}."}],
             "rejected": [{"role": "assistant", "content": f"I do not know anything about {t}."}]}
            for i, t in zip(range(n), topics * (n // len(topics) + 1), strict=False)]


def bench_train(cfg, n_pairs: int = 64) -> dict:
    """DPO pairs/s: the project's train_dpo vs TRL DPOTrainer defaults, same LoRA, same pairs."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    base, rows, s = resolve_base_model(cfg), _pairs(n_pairs), TrainSettings()
    s.optim.epochs = 1.0
    device = device_and_dtype(s.optim.precision)[0]
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up, so neither side pays for first imports and a cold page cache: a 1-step run
        warm = TrainSettings()
        warm.optim.max_steps = 1
        train_dpo(base, rows[:warm.optim.batch_size], warm, Path(tmp) / "warm", Hooks())
        start = time.perf_counter()
        train_dpo(base, rows, s, Path(tmp) / "ours", Hooks())
        ours = n_pairs / (time.perf_counter() - start)
        peak = peak_rss_mib()  # the warm-up and ours: the baseline has not run yet
        start = time.perf_counter()
        model, tok = load_policy(base, s.optim.precision)
        args = DPOConfig(output_dir=str(Path(tmp) / "trl"), report_to=[],
                         use_cpu=device == "cpu", num_train_epochs=1.0, save_strategy="no")
        DPOTrainer(model=model, args=args, processing_class=tok, peft_config=lora_config(s),
                   train_dataset=Dataset.from_list(rows)).train()
        theirs = n_pairs / (time.perf_counter() - start)
    return {"pairs_s": round(ours, 2), "pairs_s_baseline": round(theirs, 2),
            "ratio": round(ours / theirs, 2), "pairs": n_pairs, "epochs": 1,
            "device": device, "precision": _precision(s), "peak_rss_mib": peak}


def _precision(s) -> str:
    args = common_args(s, Path(tempfile.gettempdir()))
    return "bf16 autocast" if args["bf16"] else "fp16 autocast" if args["fp16"] else "fp32"
