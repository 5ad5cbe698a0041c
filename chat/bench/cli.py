"""The `bench` subcommand: each benchmark prints a table (project, baseline, ratio) or JSON."""

from __future__ import annotations

import json

from chat.config import Config, positive_int


def register(sub) -> None:
    from chat.bench.common import NAMES

    p = sub.add_parser("bench", help="benchmarks with baselines measured in the same run")
    p.add_argument("name", choices=[*NAMES, "all"], help="which benchmark")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads for both sides (default: torch's choice)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(cfg: Config, args) -> int:
    from chat.bench.common import NAMES, run_bench, table

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
