"""Run rows: one run at a time, and every run whose process is gone reaches a final state."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from chat.errors import BadInput, ChatError
from feedback.store import utcnow
from tests.test_registry import add
from tests.test_training import import_pairs, short_pairs


@pytest.fixture
def settings():
    from training.config import TrainSettings

    return TrainSettings.from_dict({"method": "dpo"})


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def set_run(store, run_id: int, **cols) -> None:
    sets = ", ".join(f"{k} = ?" for k in cols)
    with store.write() as db:
        db.conn.execute(f"UPDATE training_runs SET {sets} WHERE id = ?", [*cols.values(), run_id])


def status(store, run_id: int) -> dict:
    return store.one("SELECT status, error, adapter_version FROM training_runs WHERE id = ?",
                     (run_id,))


def test_a_second_run_is_refused_while_one_is_going(store, cfg, settings, monkeypatch):
    from training import runs

    started = []
    monkeypatch.setattr(runs, "spawn", lambda cfg, run_id: started.append(run_id) or
                        subprocess.Popen(["sleep", "30"]))
    run_id, proc = runs.start_run(store, cfg, settings, "root")
    try:
        with pytest.raises(BadInput, match=f"training run {run_id} is still going"):
            runs.start_run(store, cfg, settings, "root")
        assert started == [run_id] and store.counts()["training_runs"] == 1
        assert store.one("SELECT pid FROM training_runs")["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()
    assert runs.reap_stale(store) == 1  # its process is gone: the next run may start
    assert status(store, run_id)["status"] == "failed"


def test_a_process_that_cannot_start_fails_its_run_at_once(store, cfg, settings, monkeypatch):
    from training import runs

    def broken(cfg, run_id):
        raise OSError("no such interpreter")

    monkeypatch.setattr(runs, "spawn", broken)
    with pytest.raises(ChatError, match="could not start training run 1"):
        runs.start_run(store, cfg, settings, "root")
    row = status(store, 1)
    assert row["status"] == "failed" and "no such interpreter" in row["error"]


def test_queued_runs_whose_process_is_gone_are_reaped(store, settings):
    from training import runs

    spawned_and_died = runs.create_run(store, settings, "a")
    set_run(store, spawned_and_died, pid=dead_pid())
    just_queued = runs.create_run(store, settings, "b")
    never_spawned = runs.create_run(store, settings, "c")
    long_ago = datetime.now(UTC) - timedelta(seconds=runs.SPAWN_GRACE_S + 5)
    set_run(store, never_spawned, started_at=long_ago.isoformat(timespec="milliseconds"))
    assert runs.reap_stale(store) == 2
    assert status(store, spawned_and_died)["status"] == "failed"
    assert status(store, never_spawned)["status"] == "failed"
    assert status(store, just_queued)["status"] == "queued"


@pytest.mark.parametrize("adapter_status,run_status", [("active", "succeeded"),
                                                       ("rejected", "rejected")])
def test_a_run_that_died_after_registering_reports_its_adapter(store, settings,
                                                                adapter_status, run_status):
    from training import runs

    run_id = runs.create_run(store, settings, "root")
    set_run(store, run_id, status="running", pid=dead_pid())
    with store.write() as db:
        db.conn.execute("INSERT INTO adapters (version, path, method, status, run_id, "
                        "created_at) VALUES ('v0007', '/x', 'dpo', ?, ?, ?)",
                        (adapter_status, run_id, utcnow()))
    assert runs.reap_stale(store) == 1
    row = status(store, run_id)
    assert (row["status"], row["adapter_version"]) == (run_status, "v0007")
    assert "after registering v0007" in row["error"]


def test_a_killed_child_of_this_process_is_settled(store, cfg, settings, monkeypatch):
    """The server keeps no handle on its child: SIGKILLed, it stays a zombie, and a zombie
    still answers kill(pid, 0); the run must not stay running (and block training) forever."""
    from training import runs

    monkeypatch.setattr(runs, "spawn", lambda cfg, run_id: subprocess.Popen(["sleep", "30"]))
    run_id, proc = runs.start_run(store, cfg, settings, "root")
    proc.kill()
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # dead but not reaped: a zombie
    assert runs.get_run(store, run_id)["status"] == "failed"
    proc.wait()


def test_a_run_whose_pid_now_names_another_process_is_settled(store, cfg, settings,
                                                              monkeypatch):
    """After a reboot the recorded pid may be some other live process: the run must not look
    alive forever (blocking every later run)."""
    from training import runs

    monkeypatch.setattr(runs, "spawn", lambda cfg, run_id: subprocess.Popen(["sleep", "30"]))
    run_id, proc = runs.start_run(store, cfg, settings, "root")
    row = store.one("SELECT pid, pid_identity FROM training_runs WHERE id = ?", (run_id,))
    assert row["pid"] == proc.pid and row["pid_identity"] == runs.process_identity(proc.pid)
    assert runs.get_run(store, run_id)["status"] == "queued"  # its process lives
    set_run(store, run_id, pid=os.getpid(),  # alive, but started at another time
            pid_identity=f"{row['pid_identity'].split(':')[0]}:1")
    assert runs.reap_stale(store) == 1 and status(store, run_id)["status"] == "failed"
    proc.kill()
    proc.wait()


def test_the_training_process_has_its_own_session(store, cfg, settings):
    """Ctrl-C signals the terminal's whole foreground group: the child must not get it (the
    CLI asks the run to cancel instead); SIGTERM still ends it."""
    from training import runs

    proc = runs.spawn(cfg, runs.create_run(store, settings, "root"))
    try:
        assert os.getsid(proc.pid) == proc.pid != os.getsid(0)
    finally:
        proc.terminate()
        proc.wait()


# ---------------------------------------------------------------------------- admin vs the gate


def fake_heavy_steps(monkeypatch, during_gate) -> None:
    """Training and the gate replaced by fakes (the gate passes; registry and runner are real);
    during_gate(active) is what an admin does while the gate runs."""
    from training import runner
    from training.gate import GateResult

    def train(method, base_path, data, s, out_dir, hooks, store, cfg):
        (out_dir / "adapter_model.safetensors").write_bytes(b"x")
        return {"steps": 1}, None

    def gate(base_path, folder, active, heldout, s, system_prompt, reward=None):
        during_gate(active)
        return GateResult(True, 0.9, 0.8 if active else None, 1.0, 1.0, 1.0, len(heldout))

    # the names the runner calls (it imports them at its top)
    monkeypatch.setattr(runner, "resolve_base_model", lambda cfg: "base")
    monkeypatch.setattr(runner, "train_method", train)
    monkeypatch.setattr(runner, "gate_candidate", gate)


@pytest.mark.parametrize("action, served, why_not", [
    ("nothing", "v0003", None),
    ("rollback", None, "changed from v0001 to the base model"),
    ("activate", "v0002", "changed from v0001 to v0002"),
])
def test_what_an_admin_serves_during_the_gate_stands(store, cfg, settings, monkeypatch, action,
                                                     served, why_not):
    from training import registry, runner, runs

    v1, v2 = add(cfg, store), add(cfg, store)
    registry.activate(store, v1)
    import_pairs(store, short_pairs(12))

    def admin(active):
        assert active["version"] == v1  # what the gate compares against
        if action == "rollback":
            registry.rollback(store)
        elif action == "activate":
            registry.activate(store, v2)

    fake_heavy_steps(monkeypatch, admin)
    result = runner.run(runs.create_run(store, settings, "auto"), cfg)
    assert result["status"] == "succeeded" and result["adapter_version"] == "v0003"
    assert registry.active_version(store) == served
    assert registry.get(store, "v0003")["status"] == ("active" if why_not is None else "candidate")
    metrics = runs.get_run(store, result["run_id"])["metrics"]
    assert metrics["activated"] is (why_not is None)
    assert why_not is None or why_not in metrics["not_activated_because"]


def test_a_cancel_during_the_gate_registers_and_serves_nothing(store, cfg, settings,
                                                               monkeypatch):
    from training import registry, runner, runs

    v1 = add(cfg, store)
    registry.activate(store, v1)
    import_pairs(store, short_pairs(12))
    run_id = runs.create_run(store, settings, "auto")
    fake_heavy_steps(monkeypatch, lambda active: runs.request_cancel(store, run_id))
    assert runner.run(run_id, cfg) == {"run_id": run_id, "status": "cancelled"}
    assert registry.active_version(store) == v1
    assert [r["version"] for r in registry.list_adapters(store)] == [v1]


def test_a_killed_runs_scratch_folder_is_removed_by_the_next_run(store, cfg, settings,
                                                                 monkeypatch):
    from training import runner, runs
    from training.trainers import Cancelled

    leftover = cfg.adapters_dir / ".tmp-run-killed"
    (leftover / "work").mkdir(parents=True)
    (leftover / "work" / "adapter_model.safetensors").write_bytes(b"x" * 1000)
    seen = []

    def train(store, cfg, s, run_id, tmp):
        seen.append(sorted(p.name for p in cfg.adapters_dir.iterdir()))
        raise Cancelled

    monkeypatch.setattr(runner, "_train_and_register", train)
    assert runner.run(runs.create_run(store, settings, "root"), cfg)["status"] == "cancelled"
    assert len(seen[0]) == 1 and seen[0][0] != leftover.name  # only the run's own scratch
    assert not list(cfg.adapters_dir.glob(".tmp-run-*"))  # and that one is gone at the end


def test_a_cancel_just_before_activation_keeps_a_candidate(store, cfg, settings, monkeypatch):
    from training import registry, runner, runs

    v1 = add(cfg, store)
    registry.activate(store, v1)
    import_pairs(store, short_pairs(12))
    run_id = runs.create_run(store, settings, "auto")
    fake_heavy_steps(monkeypatch, lambda active: None)
    register = registry.register

    def register_then_cancel(*args, **kwargs):
        version = register(*args, **kwargs)
        runs.request_cancel(store, run_id)
        return version

    monkeypatch.setattr(registry, "register", register_then_cancel)
    result = runner.run(run_id, cfg)
    assert result == {"run_id": run_id, "status": "cancelled", "adapter_version": "v0002"}
    assert registry.active_version(store) == v1
    assert registry.get(store, "v0002")["status"] == "candidate"
    assert runs.get_run(store, run_id)["metrics"]["activated"] is False


def test_steps_and_the_gate_phase_keep_when_training_began(store, settings):
    from training import runs

    run_id = runs.create_run(store, settings, "a")
    runs.update_run(store, run_id, progress={"phase": "training", "since": "T0"})
    runs.record_progress(store, run_id, "dpo", 3, 12, {"loss": 0.5})
    runs.update_run(store, run_id, progress={"phase": "gate"})
    progress = runs.get_run(store, run_id)["progress"]
    assert progress["since"] == "T0" and (progress["step"], progress["total"]) == (3, 12)
    assert progress["phase"] == "gate"
    runs.update_run(store, run_id, status="succeeded", progress={"phase": "done"})
    ended = runs.get_run(store, run_id)
    assert (ended["status"], ended["progress"]["phase"], ended["progress"]["step"]) == (
        "succeeded", "done", 3)
