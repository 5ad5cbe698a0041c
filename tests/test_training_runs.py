"""Run rows: one run at a time, and every run whose process is gone reaches a final state."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from chat.errors import BadInput, ChatError
from feedback.store import utcnow


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
    from training import runner

    started = []
    monkeypatch.setattr(runner, "spawn", lambda cfg, run_id: started.append(run_id) or
                        subprocess.Popen(["sleep", "30"]))
    run_id, proc = runner.start_run(store, cfg, settings, "root")
    try:
        with pytest.raises(BadInput, match=f"training run {run_id} is still going"):
            runner.start_run(store, cfg, settings, "root")
        assert started == [run_id] and store.counts()["training_runs"] == 1
        assert store.one("SELECT pid FROM training_runs")["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait()
    assert runner.reap_stale(store) == 1  # its process is gone: the next run may start
    assert status(store, run_id)["status"] == "failed"


def test_a_process_that_cannot_start_fails_its_run_at_once(store, cfg, settings, monkeypatch):
    from training import runner

    def broken(cfg, run_id):
        raise OSError("no such interpreter")

    monkeypatch.setattr(runner, "spawn", broken)
    with pytest.raises(ChatError, match="could not start training run 1"):
        runner.start_run(store, cfg, settings, "root")
    row = status(store, 1)
    assert row["status"] == "failed" and "no such interpreter" in row["error"]


def test_queued_runs_whose_process_is_gone_are_reaped(store, settings):
    from training import runner

    spawned_and_died = runner.create_run(store, settings, "a")
    set_run(store, spawned_and_died, pid=dead_pid())
    just_queued = runner.create_run(store, settings, "b")
    never_spawned = runner.create_run(store, settings, "c")
    long_ago = datetime.now(UTC) - timedelta(seconds=runner.SPAWN_GRACE_S + 5)
    set_run(store, never_spawned, started_at=long_ago.isoformat(timespec="milliseconds"))
    assert runner.reap_stale(store) == 2
    assert status(store, spawned_and_died)["status"] == "failed"
    assert status(store, never_spawned)["status"] == "failed"
    assert status(store, just_queued)["status"] == "queued"


@pytest.mark.parametrize("adapter_status,run_status", [("active", "succeeded"),
                                                       ("rejected", "rejected")])
def test_a_run_that_died_after_registering_reports_its_adapter(store, settings,
                                                                adapter_status, run_status):
    from training import runner

    run_id = runner.create_run(store, settings, "root")
    set_run(store, run_id, status="running", pid=dead_pid())
    with store.write() as db:
        db.conn.execute("INSERT INTO adapters (version, path, method, status, run_id, "
                        "created_at) VALUES ('v0007', '/x', 'dpo', ?, ?, ?)",
                        (adapter_status, run_id, utcnow()))
    assert runner.reap_stale(store) == 1
    row = status(store, run_id)
    assert (row["status"], row["adapter_version"]) == (run_status, "v0007")
    assert "after registering v0007" in row["error"]
