"""The job runner: one training run in its own process (`python -m training.runner RUN_ID`):
its data, training, gate, registration and activation; and auto-training. Run rows and
processes: training/runs.py."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from chat.config import Config, load_config
from chat.engine.loading import resolve_base_model
from chat.errors import BadInput, NotEnoughData
from chat.profiles import active_profile
from feedback.stats import feedback_since
from feedback.store import Store, utcnow
from training import registry, retrieval_run
from training.config import TrainSettings
from training.datasets import dpo_rows, kto_rows, kto_weights, require, split
from training.runs import (
    cancel_requested,
    get_run,
    going_run,
    last_started_at,
    process_identity,
    reap_stale,
    record_progress,
    start_run,
    update_run,
)
from training.steps import gate_candidate, train_method
from training.trainers import Cancelled, Hooks

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- auto-training


def new_feedback_since_last_run(store: Store) -> int:
    return feedback_since(store, last_started_at(store))


def maybe_autotrain(store: Store, cfg: Config) -> int | None:
    """Start a run when cfg.auto_train_every new feedback items arrived (off when 0)."""
    if cfg.auto_train_every <= 0:
        return None
    reap_stale(store)
    if going_run(store) is not None:
        return None
    if new_feedback_since_last_run(store) < cfg.auto_train_every:
        return None
    settings = TrainSettings.for_config(cfg)
    try:
        prepare(store, cfg, settings)
        run_id, _ = start_run(store, cfg, settings, "auto")
    except (NotEnoughData, BadInput):  # too little data, or a run started meanwhile
        return None
    return run_id


# ---------------------------------------------------------------------------- data


def choose_method(n_pairs: int, n_up: int, n_down: int, s: TrainSettings) -> tuple[str, str]:
    """auto: pick the method the signal supports, and say why. The counts are of what each
    method would train on (after de-duplication, user caps and the held-out share), the same
    counts `min_pairs` and `min_ratings` are checked against."""
    n_ratings = n_up + n_down
    enough_pairs = n_pairs >= s.data.min_pairs
    # KTO learns from the contrast between thumbs up and down: one kind alone cannot train it
    enough_ratings = n_ratings >= s.data.min_ratings and n_up > 0 and n_down > 0
    if enough_pairs and n_pairs >= n_ratings:
        return "dpo", (f"{n_pairs} preference pairs >= {n_ratings} ratings: DPO learns "
                       "directly from pairs")
    if enough_pairs and not enough_ratings:
        return "dpo", (f"{n_pairs} preference pairs; the {n_ratings} ratings ({n_up} up, "
                       f"{n_down} down) are too few or all one kind for KTO")
    if enough_ratings:
        return "kto", (f"{n_ratings} ratings outnumber {n_pairs} pairs: KTO learns from "
                       "unpaired thumbs")
    raise NotEnoughData(
        f"only {n_pairs} preference pairs (need {s.data.min_pairs}) and {n_ratings} ratings "
        f"({n_up} up, {n_down} down; need {s.data.min_ratings} with both kinds) to train on, "
        "after the held-out share; collect more feedback or import pairs")


def prepare(store: Store, cfg: Config, s: TrainSettings) -> dict:
    """Pick the method, build and split its dataset; NotEnoughData before any heavy work."""
    if s.method == "retrieval":  # source feedback, not answers: training/retrieval_run.py
        return retrieval_run.prepare(store, cfg, s)
    profile = active_profile(store, cfg)
    uses_pairs = s.method in ("dpo", "rlhf", "auto")
    uses_ratings = s.method in ("kto", "auto")  # a given method reads only its own data
    pair_split = split(dpo_rows(store, profile), s.data, "source") if uses_pairs else None
    rating_split = split(kto_rows(store, profile), s.data, "label") if uses_ratings else None
    method, why = s.method, f"requested {s.method}"
    if method == "auto":
        n_up = sum(1 for r in rating_split.train if r["label"])
        method, why = choose_method(len(pair_split.train), n_up,
                                    len(rating_split.train) - n_up, s)
    if method in ("dpo", "rlhf"):
        data = pair_split
        require(len(data.train), s.data.min_pairs, "preference pairs for training",
                "add comparisons or corrections, or import pairs")
    else:
        data = rating_split
        require(len(data.train), s.data.min_ratings, "ratings for training",
                "collect more thumbs up/down")
        kto_weights(data.train)  # both kinds of thumb, checked here rather than in the child
    return {"method": method, "why": why, "split": data, "profile": profile}


# ---------------------------------------------------------------------------- the run


def run(run_id: int, cfg: Config | None = None) -> dict:
    """Train, gate, register and (maybe) activate; always leaves the run in a final state."""
    cfg = cfg or load_config()
    store = Store(cfg.db_path)
    row = get_run(store, run_id)
    if row["status"] != "queued":
        raise RuntimeError(f"run {run_id} is {row['status']}, not queued")
    settings = TrainSettings.from_dict(row["progress"].get("settings"))
    update_run(store, run_id, status="running", pid=os.getpid(),
               pid_identity=process_identity(os.getpid()),
               progress={"phase": "preparing", "step": 0, "total": 0})
    _remove_scratch(_adapters_dir(cfg))
    tmp = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=_adapters_dir(cfg)))
    try:
        if settings.method == "retrieval":
            hooks = _hooks(store, run_id, "retrieval", settings.optim.max_seconds)
            result = retrieval_run.run(store, cfg, settings, run_id, hooks, peak_rss_mib)
        else:
            result = _train_and_register(store, cfg, settings, run_id, tmp)
    except Cancelled:
        update_run(store, run_id, status="cancelled", finished_at=utcnow(),
                   progress={"phase": "cancelled"})
        return {"run_id": run_id, "status": "cancelled"}
    except Exception as exc:
        update_run(store, run_id, status="failed", finished_at=utcnow(), error=str(exc),
                   progress={"phase": "failed"})
        log.error("run %s failed: %s", run_id, traceback.format_exc())
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


SCRATCH_PREFIX = ".tmp-run-"


def _remove_scratch(adapters_dir: Path) -> None:
    """Scratch folders of earlier runs: a run removes its own when it ends, but one that was
    killed cannot. Runs go one at a time, so when one starts every other is a leftover."""
    for leftover in adapters_dir.glob(SCRATCH_PREFIX + "*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _adapters_dir(cfg: Config) -> Path:
    cfg.adapters_dir.mkdir(parents=True, exist_ok=True)
    return cfg.adapters_dir


def _train_and_register(store: Store, cfg: Config, s: TrainSettings, run_id: int,
                        tmp: Path) -> dict:
    prep = prepare(store, cfg, s)
    data, method = prep["split"], prep["method"]
    base_path = resolve_base_model(cfg)
    update_run(store, run_id, method=method, n_examples=len(data.train),
               progress={"phase": "training", "method": method, "why": prep["why"],
                         "since": utcnow()})
    hooks = _hooks(store, run_id, method, s.optim.max_seconds)
    started = time.monotonic()
    train_metrics, reward = train_method(method, base_path, data, s, tmp, hooks, store, cfg)
    update_run(store, run_id, progress={"phase": "gate"})
    trained, peak_training = time.monotonic(), peak_rss_mib()
    hooks.trainer = None  # the trained model's memory goes back before the gate loads its own
    gc.collect()
    active = registry.active_row(store)
    gate = gate_candidate(base_path, tmp, active, data.heldout, s,
                          prep["profile"].system_prompt, reward)
    if hooks.should_stop():  # cancelled while the gate ran: nothing registered or served
        raise Cancelled
    cost = {"train_seconds": round(trained - started, 1),
            "gate_seconds": round(time.monotonic() - trained, 1),
            "peak_rss_mib_training": peak_training, "peak_rss_mib": peak_rss_mib()}
    metrics = {"gate": gate.as_dict(), "train": train_metrics, "cost": cost, "why": prep["why"],
               "n_train": len(data.train), "n_heldout": len(data.heldout),
               "dropped_by_user_cap": data.dropped_by_cap,
               "dropped_duplicates": data.dropped_duplicates}
    meta = {"parent_version": active["version"] if active else None,
            "hyper_parameters": s.as_dict(), "feedback_ids": data.ids,
            "feedback_kind": "ratings" if method == "kto" else "preferences",
            "heldout_ids": sorted(r["id"] for r in data.heldout), "run_id": run_id,
            # whose feedback is in it: `users forget` retires it (training/registry.py)
            "feedback_users": sorted({r["user"] for r in data.train + data.heldout
                                      if r.get("user")})}
    version = registry.register(store, cfg.adapters_dir, tmp, method=method,
                                base_model=cfg.base_model, metrics=metrics, meta=meta,
                                passed=gate.passed, run_id=run_id)
    why_not = _activate(store, s, gate.passed, version, active, hooks)
    status = "succeeded" if gate.passed else "rejected"
    if why_not == CANCELLED_BEFORE_ACTIVATION:
        status = "cancelled"
    outcome = {"activated": why_not is None}
    if why_not is not None:
        outcome["not_activated_because"] = why_not
    update_run(store, run_id, status=status, finished_at=utcnow(), adapter_version=version,
               metrics={**metrics, **outcome},
               progress={"phase": "cancelled" if status == "cancelled" else "done"})
    return {"run_id": run_id, "status": status, "adapter_version": version}


def peak_rss_mib() -> int:
    """This process's peak resident memory (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


CANCELLED_BEFORE_ACTIVATION = "the run was cancelled before activation"


def _activate(store: Store, s: TrainSettings, passed: bool, version: str,
              active: dict | None, hooks: Hooks) -> str | None:
    """Serve the registered candidate if it may be; returns why not (None: it is served).
    The gate compared it with `active`: if an admin activated, rolled back or deactivated
    since, their choice stands and the new version stays a candidate."""
    if not passed:
        return "the eval gate rejected it"
    if not s.activate:
        return "the run was started with activate off (--no-activate)"
    if hooks.should_stop():
        return CANCELLED_BEFORE_ACTIVATION
    try:
        registry.activate(store, version, expected_active=active["version"] if active else None)
    except BadInput as exc:
        return str(exc)
    return None


def _hooks(store: Store, run_id: int, method: str, max_seconds: float) -> Hooks:
    def on_log(step: int, total: int, logs: dict) -> None:
        record_progress(store, run_id, method, step, total, logs)

    def should_stop() -> bool:
        return cancel_requested(store, run_id)

    deadline = time.monotonic() + max_seconds if max_seconds > 0 else None
    return Hooks(on_log=on_log, should_stop=should_stop, deadline=deadline)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO)
    try:
        run(int(argv[0]))
    except Exception as exc:  # already recorded in the run row
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
