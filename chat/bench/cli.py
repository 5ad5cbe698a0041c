"""The `bench` subcommand: each benchmark prints a table (project, baseline, ratio) or JSON."""

from __future__ import annotations

import importlib
import json

from chat.bench.common import NAMES, BenchUnavailable, table
from chat.config import Config, positive_int

# name -> (module, function, what it needs); imported only when run (they load torch, TRL...)
BENCHES = {
    "gen": ("chat.bench.gen", "bench_gen", "the engine"),
    "ttft": ("chat.bench.ttft", "bench_ttft", "the engine and retrieval"),
    "swap": ("chat.bench.swap", "bench_swap", "the adapter pool"),
    "train": ("training.bench", "bench_train", "training/"),
    "retrieval": ("retrieval.bench", "bench_retrieval", "retrieval/"),
    "feedback": ("feedback.bench", "bench_feedback", "feedback/"),
    "quality": ("chat.bench.quality", "bench_quality", "the engine and retrieval"),
}


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks with baselines measured in the same run")
    p.add_argument("name", choices=[*NAMES, "all"], help="which benchmark")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads for both sides (default: torch's choice)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(cfg: Config, args) -> int:
    if args.threads:  # a busy shared machine: 1 thread avoids OpenMP spin-wait collapse
        import torch

        torch.set_num_threads(args.threads)
    names = NAMES if args.name == "all" else (args.name,)
    results = {name: run_bench(name, cfg) for name in names}
    if args.json:
        print(json.dumps(results if args.name == "all" else results[args.name]))
    else:
        print(table(results))
    return 0


def _lazy(module: str, func: str, needs: str):
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError):
        raise BenchUnavailable(f"this benchmark needs {module}.{func} ({needs})") from None


def run_bench(name: str, cfg) -> dict:
    """Run one benchmark by name and return its flat result dict."""
    if name not in BENCHES:
        raise BenchUnavailable(f"unknown benchmark {name!r}: choose from {', '.join(NAMES)} "
                               "or all")
    bench = _lazy(*BENCHES[name])
    return bench() if name in ("retrieval", "feedback") else bench(cfg)
