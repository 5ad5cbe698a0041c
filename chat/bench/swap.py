"""Benchmarks that need LoRA adapters: hot-swap under load, and DPO training throughput."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

from chat.bench.common import percentile
from chat.config import replace
from chat.engine.engine import Engine, GenParams
from chat.engine.loading import load_base_model, resolve_base_model
from chat.engine.pool import AdapterPool
from feedback.store import Store
from training import registry

SWAP_EVENTS = 20
CLIENTS = 4


def make_adapter(cfg, folder: Path, seed: int, r: int = 8) -> Path:
    """A real peft LoRA (q/v) on the base model with small random B weights, saved as files."""
    import torch
    from peft import LoraConfig, get_peft_model

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
