"""Training-run rows and their processes: queue a run and start its own process, read and
update its row, ask it to cancel, and settle runs whose process died (crash, kill, reboot)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from chat.config import Config
from chat.errors import BadInput, ChatError, NotFound
from feedback.store import Store, dumps, utcnow
from training import registry
from training.config import TrainSettings
from training.memory import RUN_PROCESS_ENV

log = logging.getLogger(__name__)
FINISHED = ("succeeded", "rejected", "failed", "cancelled")
SPAWN_GRACE_S = 60  # a queued run whose process was never recorded is given up after this
ROOT = Path(__file__).resolve().parents[1]


def create_run(store: Store, settings: TrainSettings, requested_by: str | None) -> int:
    with store.write() as db:
        return _insert_run(db, settings, requested_by)


def _insert_run(db, settings: TrainSettings, requested_by: str | None) -> int:
    cur = db.conn.execute(
        "INSERT INTO training_runs (method, status, requested_by, started_at, progress_json) "
        "VALUES (?, 'queued', ?, ?, ?)",
        (settings.method, requested_by, utcnow(),
         dumps({"phase": "queued", "settings": settings.as_dict()})))
    return cur.lastrowid


def start_run(store: Store, cfg: Config, settings: TrainSettings,
              requested_by: str | None) -> tuple[int, subprocess.Popen]:
    """Queue a run and start its process, unless a run is still going: the check and the
    insert share one transaction, so two requests at once cannot start two runs."""
    reap_stale(store)
    with store.write() as db:
        busy = _going(db)
        if busy:
            raise BadInput(f"training run {busy} is still going; cancel it or wait")
        run_id = _insert_run(db, settings, requested_by)
    try:
        proc = spawn(cfg, run_id)
    except OSError as exc:
        update_run(store, run_id, status="failed", finished_at=utcnow(),
                   error=f"could not start the training process: {exc}",
                   progress={"phase": "failed"})
        raise ChatError(f"could not start training run {run_id}: {exc}") from None
    # the child sets its pid too; setting it here lets a child that dies before that be reaped
    with store.write() as db:
        db.conn.execute("UPDATE training_runs SET pid = ?, pid_identity = ? "
                        "WHERE id = ? AND pid IS NULL",
                        (proc.pid, process_identity(proc.pid), run_id))
    return run_id, proc


def _going(db) -> int | None:
    row = db.conn.execute("SELECT id FROM training_runs "
                          "WHERE status IN ('queued', 'running')").fetchone()
    return row[0] if row else None


def going_run(store: Store) -> int | None:
    """The id of a run that is queued or running, if any."""
    return _going(store.db)


def latest_run_id(store: Store) -> int | None:
    row = store.one("SELECT id FROM training_runs ORDER BY id DESC LIMIT 1")
    return row["id"] if row else None


def last_started_at(store: Store) -> str:
    """When the latest run started (ISO time); "" when there has been none."""
    return store.one("SELECT max(started_at) AS t FROM training_runs")["t"] or ""


def get_run(store: Store, run_id: int) -> dict:
    reap_stale(store)
    row = store.one("SELECT * FROM training_runs WHERE id = ?", (run_id,))
    if row is None:
        raise NotFound(f"no training run {run_id}")
    for key in ("progress_json", "metrics_json"):
        row[key[:-5]] = json.loads(row.pop(key) or "{}")
    return row


def update_run(store: Store, run_id: int, **cols) -> None:
    """Set columns of a run; `progress` fields are merged into its progress in the same
    transaction, keeping the others (a later phase keeps the steps and when training began)."""
    progress = cols.pop("progress", None)
    if "metrics" in cols:
        cols["metrics_json"] = dumps(cols.pop("metrics"))
    with store.write() as db:
        if cols:
            sets = ", ".join(f"{k} = ?" for k in cols)
            db.conn.execute(f"UPDATE training_runs SET {sets} WHERE id = ?",
                            [*cols.values(), run_id])
        if progress is not None:
            _merge(db, run_id, progress)


def request_cancel(store: Store, run_id: int) -> None:
    with store.write() as db:
        db.conn.execute("UPDATE training_runs SET cancel_requested = 1 WHERE id = ?", (run_id,))


def cancel_requested(store: Store, run_id: int) -> bool:
    row = store.one("SELECT cancel_requested FROM training_runs WHERE id = ?", (run_id,))
    return bool(row and row["cancel_requested"])


def record_progress(store: Store, run_id: int, method: str, step: int, total: int,
                    logs: dict) -> None:
    """A logged training step: its event (a point of the curve) and the run's progress, in
    one transaction so the two never disagree."""
    with store.write() as db:
        db.conn.execute(
            "INSERT INTO training_events (run_id, step, total, metrics_json, created_at) "
            "VALUES (?, ?, ?, ?, ?)", (run_id, step, total, dumps(logs), utcnow()))
        _merge(db, run_id, {"phase": logs.get("phase", "training"), "method": method,
                            "step": step, "total": total, "last": logs})


def _merge(db, run_id: int, fields: dict) -> None:
    row = db.conn.execute("SELECT progress_json FROM training_runs WHERE id = ?",
                          (run_id,)).fetchone()
    progress = json.loads((row[0] if row else None) or "{}")
    db.conn.execute("UPDATE training_runs SET progress_json = ? WHERE id = ?",
                    (dumps({**progress, **fields}), run_id))


def curve(store: Store, run_id: int) -> list[dict]:
    """The run's logged steps, in order: {"step": n, **the metrics logged at it}."""
    events = store.query("SELECT step, total, metrics_json FROM training_events "
                         "WHERE run_id = ? ORDER BY id", (run_id,))
    return [{"step": e["step"], **json.loads(e["metrics_json"])} for e in events]


def process_identity(pid: int) -> str | None:
    """Boot id and start time of process `pid` (Linux), which a reused pid does not share;
    None where /proc cannot tell."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return f"{boot}:{stat.rsplit(')', 1)[1].split()[19]}"  # field 22, counted after the name


def _alive(pid: int | None, identity: str | None = None) -> bool:
    if not pid:
        return False
    if identity is not None and process_identity(pid) not in (identity, None):
        return False  # the pid now names another process (a reboot, or pids wrapped)
    try:  # our own child (the server started it) that has exited: reap it, since a zombie
        done, _ = os.waitpid(pid, os.WNOHANG)  # still answers kill(pid, 0) as if alive
        if done == pid:
            return False
    except ChildProcessError:
        pass  # not our child (another process started it): the signal probe below decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_stale(store: Store) -> int:
    """Settle runs whose process is gone (crash, kill -9, or it never started)."""
    rows = store.query("SELECT id, pid, pid_identity, status, started_at FROM training_runs "
                       "WHERE status IN ('queued', 'running')")
    gone = [r["id"] for r in rows if _gone(r)]
    for run_id in gone:
        _settle_dead(store, run_id)
    return len(gone)


def _gone(row: dict) -> bool:
    if row["pid"]:
        return not _alive(row["pid"], row["pid_identity"])
    if row["status"] == "running":
        return True
    # queued without a pid: between insert and spawn (milliseconds), unless the server died
    waited = datetime.now(UTC) - datetime.fromisoformat(row["started_at"])
    return waited.total_seconds() > SPAWN_GRACE_S


def _settle_dead(store: Store, run_id: int) -> None:
    """A dead run's final state: failed, unless it had already registered its adapter (it
    died between registering and recording that), which the run then reports."""
    adapter = registry.of_run(store, run_id)
    if adapter is None:
        status, version = "failed", None
        error = "the training process died (crash or kill); nothing served changed"
    else:
        version = adapter["version"]
        status = "rejected" if adapter["status"] == "rejected" else "succeeded"
        error = (f"the training process died after registering {version} "
                 f"(now {adapter['status']})")
    with store.write() as db:
        db.conn.execute(
            "UPDATE training_runs SET status = ?, finished_at = ?, error = ?, "
            "adapter_version = ? WHERE id = ? AND status IN ('queued', 'running')",
            (status, utcnow(), error, version, run_id))


def spawn(cfg: Config, run_id: int) -> subprocess.Popen:
    """Start the run in its own process (never in the server's)."""
    env = {**RUN_PROCESS_ENV, **os.environ, "CHAT_DATA_DIR": str(cfg.data_dir),
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if cfg.model_cache is not None:
        env["CHAT_MODEL_CACHE"] = str(cfg.model_cache)
    if cfg.base_model:
        env["CHAT_BASE_MODEL"] = cfg.base_model
    log_file = log_path(cfg, run_id)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:  # a file, not a pipe: a full pipe would stall the run
        # its own session: Ctrl-C in the terminal reaches the CLI only, which asks the run to
        # cancel (a SIGINT here would kill it mid-step and leave it failed)
        return subprocess.Popen([sys.executable, "-m", "training.runner", str(run_id)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def log_path(cfg: Config, run_id: int) -> Path:
    return cfg.data_dir / "logs" / f"train-{run_id}.log"
