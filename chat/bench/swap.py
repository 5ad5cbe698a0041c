"""Benchmarks that need LoRA adapters: hot-swap under load, and DPO training throughput."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

from chat.bench.common import percentile

SWAP_EVENTS = 20
CLIENTS = 4


def make_adapter(cfg, folder: Path, seed: int, r: int = 8) -> Path:
    """A real peft LoRA (q/v) on the base model with small random B weights, saved as files."""
    import torch
    from peft import LoraConfig, get_peft_model

    from chat.engine.loading import load_base_model

    model, _, _ = load_base_model(cfg)
    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r,
                                                  target_modules=["q_proj", "v_proj"]))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # B starts at zero in peft: make the adapter change outputs
                param.copy_(torch.randn(param.shape, generator=gen) * 0.01)
    peft_model.save_pretrained(str(folder), safe_serialization=True)
    return folder


# ---------------------------------------------------------------------------- swap


def _client(service_call, stop: threading.Event, stats: dict, lock: threading.Lock) -> None:
    while not stop.is_set():
        try:
            service_call()
            with lock:
                stats["ok"] += 1
        except Exception as exc:  # every failure is counted, none may happen
            with lock:
                stats["failed"] += 1
                stats["errors"].append(repr(exc))


def bench_swap(cfg) -> dict:
    """4 streaming clients while 20 activations/rollbacks happen through the AdapterPool."""
    from chat.config import replace
    from chat.engine.engine import Engine, GenParams
    from chat.engine.loading import resolve_base_model
    from chat.engine.pool import AdapterPool
    from feedback.store import Store
    from training import registry

    engine = Engine.from_config(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = replace(cfg, data_dir=Path(tmp) / "data")
        store = Store(cfg.db_path)
        versions = [registry.register(
            store, cfg.adapters_dir, make_adapter(cfg, Path(tmp) / f"a{i}", seed=i),
            method="dpo", base_model=resolve_base_model(cfg), metrics={}, meta={},
            passed=True, run_id=None) for i in range(3)]
        pool = AdapterPool(store, engine, cfg)
        params = GenParams(max_new_tokens=24)
        question = [{"role": "user", "content": "Tell me about lighthouses."}]

        def one_request() -> None:
            version = pool.active or None
            for _ in engine.generate(question, params, version):
                pass

        stop, lock = threading.Event(), threading.Lock()
        stats = {"ok": 0, "failed": 0, "errors": []}
        threads = [threading.Thread(target=_client, args=(one_request, stop, stats, lock))
                   for _ in range(CLIENTS)]
        for t in threads:
            t.start()
        swap_ms = _swap_events(store, pool, engine, question, versions)
        stop.set()
        for t in threads:
            t.join()
    return {"failed": stats["failed"], "requests_ok": stats["ok"],
            "swap_ms_p50": round(percentile(swap_ms, 50), 1),
            "swap_ms_p90": round(percentile(swap_ms, 90), 1),
            "swap_ms_mean": round(statistics.mean(swap_ms), 1), "events": len(swap_ms),
            "clients": CLIENTS, "errors": stats["errors"][:3]}


def _swap_events(store, pool, engine, question, versions) -> list[float]:
    """Activate or roll back; time from the registry change to a first token on the new one."""
    from chat.engine.engine import GenParams
    from training import registry

    times = []
    for i in range(SWAP_EVENTS):
        start = time.perf_counter()
        if i % 3 == 2:
            registry.rollback(store)
        else:
            registry.activate(store, versions[(i - i // 3) % len(versions)])
        expected = pool.refresh()
        next(iter(engine.generate(question, GenParams(max_new_tokens=4), expected)))
        times.append((time.perf_counter() - start) * 1000)
    return times


# ---------------------------------------------------------------------------- train


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

    from chat.engine.loading import resolve_base_model
    from training.config import TrainSettings
    from training.trainers import Hooks, device_and_dtype, load_policy, lora_config, train_dpo

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
        start = time.perf_counter()
        model, tok = load_policy(base, s.optim.precision)
        args = DPOConfig(output_dir=str(Path(tmp) / "trl"), report_to=[],
                         use_cpu=device == "cpu", num_train_epochs=1.0, save_strategy="no")
        DPOTrainer(model=model, args=args, processing_class=tok, peft_config=lora_config(s),
                   train_dataset=Dataset.from_list(rows)).train()
        theirs = n_pairs / (time.perf_counter() - start)
    return {"pairs_s": round(ours, 2), "pairs_s_baseline": round(theirs, 2),
            "ratio": round(ours / theirs, 2), "pairs": n_pairs, "epochs": 1,
            "device": device, "precision": _precision(s)}


def _precision(s) -> str:
    from training.trainers import common_args

    args = common_args(s, Path(tempfile.gettempdir()))
    return "bf16 autocast" if args["bf16"] else "fp16 autocast" if args["fp16"] else "fp32"
