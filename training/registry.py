"""The adapter registry: rows in `adapters` + folders adapters/vNNNN; activation, rollback."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from chat.errors import BadInput, NotFound
from feedback.served import ServedVersions
from feedback.store import Store, decoded, dumps, utcnow

VERSION_RE = re.compile(r"^v\d{4,}$")
COMPLETE_MARKER = "meta.json"  # written last: a folder without it is incomplete
SERVED = ServedVersions("adapters", "serving_log")


def format_version(n: int) -> str:
    return f"v{n:04d}"


def check_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION_RE.match(version):
        raise BadInput(f"adapter version must look like v0001, got {version!r}")
    return version


def _decode(row: dict | None) -> dict | None:
    return decoded(row, "metrics_json", "meta_json")


def get(store: Store, version: str) -> dict:
    row = _decode(store.one("SELECT * FROM adapters WHERE version = ?", (check_version(version),)))
    if row is None:
        raise NotFound(f"no adapter {version}; see `python launch.py adapters list`")
    return row


def list_adapters(store: Store) -> list[dict]:
    return [_decode(r) for r in store.query("SELECT * FROM adapters ORDER BY version")]


def active_version(store: Store) -> str | None:
    return SERVED.active(store)


def serving_history(store: Store) -> list[dict]:
    """When each version began to be served, oldest first (version None: the base model)."""
    return SERVED.switches(store)


def active_row(store: Store) -> dict | None:
    return _decode(store.one("SELECT * FROM adapters WHERE status = 'active'"))


def servable(store: Store) -> list[dict]:
    """Versions a request may pin (version, status, method, created_at), oldest first: all
    but the rejected ones and one still training."""
    return store.query(
        "SELECT version, status, method, created_at FROM adapters "
        "WHERE status IN ('active', 'candidate', 'retired') AND NOT erased_data "
        "ORDER BY created_at")


def of_run(store: Store, run_id: int) -> dict | None:
    """The version and status of the adapter a training run registered, if it did."""
    return store.one("SELECT version, status FROM adapters WHERE run_id = ?", (run_id,))


# ---------------------------------------------------------------------------- registration


def register(store: Store, adapters_dir: Path, tmp_folder: Path, *, method: str,
             base_model: str, metrics: dict, meta: dict, passed: bool,
             run_id: int | None) -> str:
    """Move a complete adapter folder into adapters/vNNNN and add its row, in one transaction."""
    adapters_dir.mkdir(parents=True, exist_ok=True)
    status = "candidate" if passed else "rejected"
    with store.write() as db:
        # numerically: as text, "v10000" sorts before "v9999"
        last = db.conn.execute(
            "SELECT max(CAST(substr(version, 2) AS INTEGER)) FROM adapters").fetchone()[0]
        version = format_version((last or 0) + 1)
        target = adapters_dir / version
        if target.exists():  # left by a process killed between rename and commit: no row
            shutil.rmtree(target)
        meta = {**meta, "version": version, "method": method, "base_model": base_model,
                "metrics": metrics}
        (tmp_folder / COMPLETE_MARKER).write_text(json.dumps(meta, indent=2))
        os.replace(tmp_folder, target)
        db.conn.execute(
            "INSERT INTO adapters (version, path, parent_version, method, base_model, "
            "metrics_json, meta_json, status, run_id, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (version, str(target), meta.get("parent_version"), method, base_model,
             dumps(metrics), dumps(meta), status, run_id, utcnow()))
    return version


# ---------------------------------------------------------------------------- activation


ANY_ACTIVE = object()  # activate() without expected_active: whatever is served is replaced


def activate(store: Store, version: str, base_model: str | None = None, *,
             expected_active: str | None | object = ANY_ACTIVE) -> dict:
    """Make `version` the one served: one transaction (old active -> retired, new -> active).
    With `base_model` (the one this deployment serves), an adapter trained on another is
    refused: its weights would be applied to a model they were not made for. With
    `expected_active` (a version, or None for the base model), it is refused unless that is
    still what is served, checked in the same transaction as the switch."""
    row = get(store, version)
    if base_model and row["base_model"] and row["base_model"] != base_model:
        raise BadInput(f"adapter {version} was trained on {row['base_model']!r}; this "
                       f"deployment serves {base_model!r}")
    if row["status"] == "rejected":
        raise BadInput(f"adapter {version} failed the eval gate and cannot be activated")
    if row["status"] == "training":
        raise BadInput(f"adapter {version} is still training")
    if row["erased_data"]:
        raise BadInput(f"adapter {version} was trained on feedback of a forgotten user and "
                       "cannot be served again")
    if not (Path(row["path"]) / "adapter_model.safetensors").exists():
        raise NotFound(f"adapter {version}: files missing in {row['path']}")
    _serve(store, version, expected_active)
    return get(store, version)


def _serve(store: Store, version: str | None, expected_active) -> None:
    """The one place what is served changes, in one transaction: the active adapter retired,
    `version` (None: the base model) made active, the change logged for rollback."""
    with store.write() as db:
        if expected_active is not ANY_ACTIVE:
            _check_still_active(db, expected_active)
        SERVED.switch(db, version)


def _check_still_active(db, expected: str | None) -> None:
    """Inside the write transaction: refuse when what is served is no longer `expected` (an
    admin activated, rolled back or deactivated meanwhile; their choice stands)."""
    now = SERVED.active_in(db)
    if now != expected:
        raise BadInput(f"the served adapter changed from {expected or 'the base model'} to "
                       f"{now or 'the base model'} meanwhile")


def deactivate(store: Store, *, expected_active: str | None | object = ANY_ACTIVE) -> str:
    """Serve the base model: the active adapter becomes retired (still loadable). Returns the
    version that was active. With `expected_active`, refused unless that is still served."""
    current = active_row(store)
    if current is None:
        raise BadInput("no adapter is active; the base model is already served")
    _serve(store, None, expected_active)
    return current["version"]


def rollback(store: Store, base_model: str | None = None) -> str | None:
    """Serve again what was served before the current state: an earlier version, or the base
    model (None). Two rollbacks in a row swap the last two states, the base model included
    (like `cd -`); `deactivate` serves the base model whatever came before."""
    current = active_version(store)
    prev = SERVED.before(store, current)
    if prev is None and current is None:
        raise BadInput("the base model is served and nothing was before it; nothing to roll "
                       "back")
    if prev is None or prev["version"] is None:
        deactivate(store, expected_active=current)
        return None
    activate(store, prev["version"], base_model, expected_active=current)
    return prev["version"]


# ---------------------------------------------------------------------------- erasure


def trained_on(meta: dict, user: str, preference_ids: set[int], rating_ids: set[int]) -> bool:
    """Did this adapter's training or its held-out scoring use any of these feedback rows
    (or, where recorded, any feedback of `user`)? The held-out rows count: early stopping
    chose the kept weights by them."""
    used = set(meta.get("feedback_ids") or []) | set(meta.get("heldout_ids") or [])
    ids = rating_ids if meta.get("feedback_kind") == "ratings" else preference_ids
    return bool(used & ids) or user in (meta.get("feedback_users") or [])


def retire_erased(db, user: str, preference_ids: list[int],
                  rating_ids: list[int]) -> tuple[list[str], str | None, str | None]:
    """Inside the caller's write transaction: mark every adapter trained on the rows as
    holding erased data (never served again). If the served one is among them, serve the
    latest earlier-served version without such data, or the base model (None).
    Returns (versions marked, version served before, version served now)."""
    prefs, ratings = set(preference_ids), set(rating_ids)
    marked = [r["version"] for r in map(_decode, db.query(
        "SELECT * FROM adapters WHERE NOT erased_data")) if trained_on(r["meta"], user, prefs,
                                                                      ratings)]
    return (marked, *SERVED.mark_erased(db, marked))
