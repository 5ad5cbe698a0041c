"""Subcommands: train, adapters list|show|activate|rollback|deactivate."""

from __future__ import annotations

import json
import sys
import time

from chat.config import Config
from chat.errors import BadInput
from feedback.store import Store
from training import registry, runner, runs
from training.config import METHODS, TrainSettings


def register(sub) -> None:
    p = sub.add_parser("train", help="train a LoRA adapter from feedback (own process)")
    p.add_argument("--method", choices=METHODS, default="auto")
    p.add_argument("--no-activate", action="store_true", help="keep a passing adapter as "
                   "candidate instead of activating it")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--epochs", type=float, default=None)
    p.add_argument("--max-steps", type=int, default=None, help="> 0 overrides --epochs")
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--max-seconds", type=float, default=None,
                   help="wall-time cap on training; the adapter trained so far is gated")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="any training setting, e.g. --set optim.patience=0 --set gate."
                        "max_facts_drop=0.5 (VALUE as JSON, else a string); repeatable")
    p.add_argument("--user", default="cli", help="who requested the run")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("adapters", help="list, show, activate, roll back or deactivate adapters")
    asub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = asub.add_parser("list", help="all versions with status and gate figures")
    a.add_argument("--json", action="store_true")
    a = asub.add_parser("show", help="one version: metrics and meta")
    a.add_argument("version")
    a.add_argument("--json", action="store_true")
    a = asub.add_parser("activate", help="serve this version (running servers follow)")
    a.add_argument("version")
    asub.add_parser("rollback", help="serve again what was served before (a version or the base)")
    asub.add_parser("deactivate", help="serve the base model (the active adapter is retired)")
    p.set_defaults(func=cmd_adapters)


# ---------------------------------------------------------------------------- train


def settings_from_args(cfg: Config, args):
    sections = parse_sets(getattr(args, "set", []))
    optim = {k: v for k, v in {"epochs": args.epochs, "max_steps": args.max_steps,
                               "learning_rate": args.learning_rate,
                               "batch_size": args.batch_size,
                               "max_seconds": args.max_seconds}.items() if v is not None}
    optim = {**sections.pop("optim", {}), **optim}
    return TrainSettings.for_config(cfg, optim, method=args.method,
                                    activate=not args.no_activate, **sections)


def parse_sets(items: list[str]) -> dict[str, dict]:
    """["optim.beta=0.1", ...] -> {"optim": {"beta": 0.1}}; the settings check the values."""
    out: dict[str, dict] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not section or not name:
            raise BadInput(f"--set wants SECTION.KEY=VALUE (e.g. optim.beta=0.1), got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(section, {})[name] = value
    return out


def cmd_train(cfg: Config, args) -> int:
    settings = settings_from_args(cfg, args)
    store = Store(cfg.db_path)
    runner.prepare(store, cfg, settings)  # NotEnoughData here, before a process starts
    run_id, proc = runs.start_run(store, cfg, settings, args.user)
    row = wait(store, run_id, proc, show_bar=not args.json and sys.stderr.isatty(),
               log_file=runs.log_path(cfg, run_id))
    out = summary(row)
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        print_summary(out)
    return 0 if out["status"] in ("succeeded", "rejected") else 1


def wait(store, run_id: int, proc, show_bar: bool, log_file=None, poll_s: float = 0.5) -> dict:
    """Follow the run's progress in the database until its process ends; Ctrl-C cancels."""
    bar = None
    try:
        while proc.poll() is None:
            row = runs.get_run(store, run_id)
            bar = _draw(bar, row["progress"]) if show_bar else None
            time.sleep(poll_s)
    except KeyboardInterrupt:
        runs.request_cancel(store, run_id)
        print("cancelling...", file=sys.stderr)
        proc.wait()
    if bar is not None:
        bar.close()
    row = runs.get_run(store, run_id)
    if row["status"] not in runs.FINISHED:
        err = log_file.read_text(errors="replace")[-2000:] if log_file else ""
        runs.update_run(store, run_id, status="failed", error=err or "process ended early")
        row = runs.get_run(store, run_id)
    return row


def _draw(bar, progress: dict):
    from tqdm import tqdm

    total, step = progress.get("total") or 0, progress.get("step") or 0
    if bar is None and total:
        bar = tqdm(total=total, desc=progress.get("method", "train"), unit="step")
    if bar is not None:
        bar.update(step - bar.n)
        last = progress.get("last", {})
        if "loss" in last:
            bar.set_postfix(loss=f"{last['loss']:.3f}")
    return bar


def summary(row: dict) -> dict:
    """The CLI's JSON contract for a finished run."""
    metrics = row.get("metrics") or {}
    return {"run_id": row["id"], "status": row["status"], "method": row["method"],
            "adapter_version": row["adapter_version"],
            "retriever_version": metrics.get("retriever_version"),
            "n_train": metrics.get("n_train"),
            "n_heldout": metrics.get("n_heldout"), "gate": metrics.get("gate"),
            "activated": bool(metrics.get("activated")),
            "not_activated_because": metrics.get("not_activated_because"),
            "why": metrics.get("why"), "train": metrics.get("train"), "cost": metrics.get("cost"),
            "error": row.get("error")}


def print_summary(out: dict) -> None:
    print(f"run {out['run_id']}: {out['status']} ({out['method']})")
    if out.get("error"):
        print(f"  error: {out['error']}")
    gate = out.get("gate") or {}
    if out["method"] == "retrieval" and gate:
        print_retrieval_gate(out)
    elif gate:
        print(f"  adapter {out['adapter_version']}: gate {'passed' if gate['passed'] else 'FAILED'}"
              f", preference accuracy {gate['pref_accuracy']}, active "
              f"{gate['pref_accuracy_active']}, perplexity ratio {gate['ppl_ratio']}")
        for reason in gate.get("reasons", []):
            print(f"  - {reason}")
        why_not = out.get("not_activated_because")
        print(f"  activated: {out['activated']}" + (f" ({why_not})" if why_not else ""))


def print_retrieval_gate(out: dict) -> None:
    gate = out["gate"]
    print(f"  retriever {out['retriever_version']}: {gate['verdict']} (against "
          f"{gate['compared_with']})")
    for label, key in (("held-out", "heldout"), ("regression set", "regression")):
        before, after = gate[f"{key}_before"], gate[f"{key}_after"]
        print(f"  {label}: " + ", ".join(f"{m} {before[m]} -> {after[m]}" for m in before
                                         if not m.startswith("queries_")))
    for reason in gate.get("reasons", []):
        print(f"  - {reason}")
    why_not = out.get("not_activated_because")
    print(f"  activated: {out['activated']}" + (f" ({why_not})" if why_not else ""))


# ---------------------------------------------------------------------------- adapters


def cmd_adapters(cfg: Config, args) -> int:
    store = Store(cfg.db_path)
    if args.action == "list":
        rows = registry.list_adapters(store)
        if args.json:
            print(json.dumps(rows, ensure_ascii=False))
        for r in [] if args.json else rows:
            gate = (r["metrics"] or {}).get("gate") or {}
            print(f"{r['version']}  {r['status']:<9} {r['method']:<5} "
                  f"acc={gate.get('pref_accuracy')} ppl_ratio={gate.get('ppl_ratio')} "
                  f"{r['created_at']}")
        if not rows and not args.json:
            print("no adapters yet; the base model is served")
    elif args.action == "show":
        row = registry.get(store, args.version)
        print(json.dumps(row, ensure_ascii=False, indent=None if args.json else 2))
    elif args.action == "activate":
        row = registry.activate(store, args.version, cfg.base_model)
        print(f"{row['version']} is active")
    elif args.action == "deactivate":
        print(f"{registry.deactivate(store)} retired; the base model is served")
    else:
        version = registry.rollback(store, cfg.base_model)
        print(f"{version or 'the base model'} is active")
    return 0
