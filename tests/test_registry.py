"""Adapter registry: versions, activation in one transaction, rollback, rejected never served."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from chat.errors import BadInput, NotFound
from tests.test_training import ROOT


def fake_adapter(cfg, name: str):
    """A folder shaped like an adapter (registry logic only; real weights in test_training)."""
    folder = cfg.adapters_dir / f".tmp-{name}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"x")
    return folder


def add(cfg, store, passed=True) -> str:
    from training import registry

    n = store.counts()["adapters"]
    return registry.register(store, cfg.adapters_dir, fake_adapter(cfg, str(n)), method="dpo",
                             base_model=cfg.base_model, metrics={"gate": {"passed": passed}},
                             meta={"feedback_ids": [1, 2]}, passed=passed, run_id=None)


def test_register_numbers_versions_and_writes_meta_last(cfg, store):
    from training import registry

    assert [add(cfg, store), add(cfg, store)] == ["v0001", "v0002"]
    meta = json.loads((cfg.adapters_dir / "v0002" / "meta.json").read_text())
    assert meta["version"] == "v0002" and meta["feedback_ids"] == [1, 2]
    assert registry.get(store, "v0001")["status"] == "candidate"
    assert not list(cfg.adapters_dir.glob(".tmp-*"))


def test_versions_count_on_past_9999(cfg, store):
    from feedback.store import utcnow

    with store.write() as db:
        db.conn.execute("INSERT INTO adapters (version, path, method, status, created_at) "
                        "VALUES ('v9999', '/x', 'dpo', 'retired', ?)", (utcnow(),))
    assert [add(cfg, store), add(cfg, store)] == ["v10000", "v10001"]


def test_activate_retires_previous_and_rollback_restores(cfg, store):
    from training import registry

    v1, v2 = add(cfg, store), add(cfg, store)
    registry.activate(store, v1)
    registry.activate(store, v2)
    assert registry.active_version(store) == v2 and registry.get(store, v1)["status"] == "retired"
    assert registry.rollback(store) == v1
    assert registry.active_version(store) == v1
    assert registry.rollback(store) == v2  # rollback of a rollback: like `cd -`


def test_rollback_of_the_first_version_serves_the_base(cfg, store):
    from training import registry

    with pytest.raises(BadInput, match="nothing to roll back"):
        registry.rollback(store)  # nothing was ever served but the base model
    v1 = registry.activate(store, add(cfg, store))["version"]
    assert registry.rollback(store) is None
    assert registry.active_version(store) is None
    assert registry.rollback(store) == v1  # and back: two rollbacks swap, base included


def test_deactivate_serves_the_base_after_any_history(cfg, store):
    """Rollback swaps the last two versions; deactivate is the way back to the base model."""
    from training import registry

    v1, v2 = add(cfg, store), add(cfg, store)
    registry.activate(store, v1)
    registry.activate(store, v2)
    assert registry.deactivate(store) == v2
    assert registry.active_version(store) is None
    assert {registry.get(store, v)["status"] for v in (v1, v2)} == {"retired"}
    registry.activate(store, v2)  # a retired version can be served again
    assert registry.active_version(store) == v2


def test_rollback_returns_to_the_base_model_when_it_was_served_before(cfg, store):
    from training import registry

    v1, v2 = add(cfg, store), add(cfg, store)
    registry.activate(store, v1)
    registry.deactivate(store)  # the admin withdrew v1
    registry.activate(store, v2)  # then the next run's adapter went live
    assert registry.rollback(store) is None  # back to the base model, not to v1
    assert registry.active_version(store) is None
    assert registry.rollback(store) == v2
    assert registry.rollback(store) is None
    registry.activate(store, v1)
    registry.activate(store, v1)  # activating it twice is one state, not two
    assert registry.rollback(store) is None


def test_an_older_store_gets_its_serving_history_from_the_adapters(cfg, store):
    """The serving log came with a later migration: it starts from the activation times."""
    from feedback.store import Store
    from training import registry

    v1, v2 = add(cfg, store), add(cfg, store)
    registry.activate(store, v1)
    registry.activate(store, v2)
    with store.write() as db:  # the file as the first migration left it
        db.conn.execute("DROP TABLE serving_log")
        db.conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm002_serving_log'")
    reopened = Store(cfg.db_path)
    assert [r["version"] for r in reopened.query("SELECT version FROM serving_log")] == [v1, v2]
    assert registry.rollback(reopened) == v1


def test_rollback_refuses_a_version_of_another_base_model(cfg, store):
    from training import registry

    v1, v2 = add(cfg, store), add(cfg, store)
    registry.activate(store, v1)
    registry.activate(store, v2)
    with store.write() as db:
        db.conn.execute("UPDATE adapters SET base_model = 'other' WHERE version = ?", (v1,))
    with pytest.raises(BadInput, match="trained on 'other'"):
        registry.rollback(store, cfg.base_model)
    assert registry.active_version(store) == v2


def test_activate_can_require_what_is_served_to_be_unchanged(cfg, store):
    """A run activates only if the version its gate compared against is still the one served;
    an admin's activation, rollback or deactivation meanwhile stands."""
    from training import registry

    v1, v2 = add(cfg, store), add(cfg, store)
    registry.activate(store, v1)
    with pytest.raises(BadInput, match="changed from the base model to v0001"):
        registry.activate(store, v2, expected_active=None)
    assert registry.active_version(store) == v1
    registry.activate(store, v2, expected_active=v1)
    assert registry.active_version(store) == v2
    registry.deactivate(store)
    with pytest.raises(BadInput, match="changed from v0002 to the base model"):
        registry.activate(store, v1, expected_active=v2)
    assert registry.active_version(store) is None


def test_a_rollback_to_the_base_does_not_undo_an_activation_meanwhile(cfg, store):
    from feedback.store import Store
    from training import registry

    v1, v3 = add(cfg, store), add(cfg, store)
    registry.activate(store, v1)  # the first version: a rollback goes to the base model
    read_log = store.one

    def admin_activates_after_the_log_is_read(sql, params=()):
        row = read_log(sql, params)
        if "serving_log" in sql:
            registry.activate(Store(cfg.db_path), v3)  # another process, in between
        return row

    store.one = admin_activates_after_the_log_is_read
    with pytest.raises(BadInput, match="changed from v0001 to v0002"):
        registry.rollback(store)
    store.one = read_log
    assert registry.active_version(store) == v3


def test_rejected_and_unknown_versions_are_refused(cfg, store):
    from training import registry

    bad = add(cfg, store, passed=False)
    with pytest.raises(BadInput, match="eval gate"):
        registry.activate(store, bad)
    with pytest.raises(NotFound, match="v0099"):
        registry.activate(store, "v0099")
    with pytest.raises(BadInput, match="v0001"):
        registry.get(store, "../etc")
    assert registry.active_version(store) is None


def test_an_adapter_of_another_base_model_is_refused(cfg, store):
    from training import registry

    version = add(cfg, store)
    with store.write() as db:
        db.conn.execute("UPDATE adapters SET base_model = 'other-model' WHERE version = ?",
                        (version,))
    with pytest.raises(BadInput, match="trained on 'other-model'"):
        registry.activate(store, version, cfg.base_model)
    assert registry.active_version(store) is None


def test_adapters_cli(cfg, store):
    v1, v2 = add(cfg, store), add(cfg, store)

    def cli(*args):
        return subprocess.run([sys.executable, "launch.py", "adapters", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    assert cli("activate", v2).returncode == 0
    listed = json.loads(cli("list", "--json").stdout)
    assert [(r["version"], r["status"]) for r in listed] == [(v1, "candidate"), (v2, "active")]
    assert json.loads(cli("show", v2, "--json").stdout)["meta"]["feedback_ids"] == [1, 2]
    bad = cli("activate", "v0042")
    assert bad.returncode == 2 and bad.stderr.startswith("error: no adapter v0042")
    rolled = cli("rollback")
    assert rolled.returncode == 0 and "base model" in rolled.stdout
    from training import registry

    assert registry.active_version(store) is None
    assert cli("activate", v1).returncode == 0 and cli("activate", v2).returncode == 0
    base = cli("deactivate")
    assert base.returncode == 0 and base.stdout == f"{v2} retired; the base model is served\n"
    assert registry.active_version(store) is None
    again = cli("deactivate")
    assert again.returncode == 2 and "already served" in again.stderr
