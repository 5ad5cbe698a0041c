"""Forget a user, in the data and in the model.

One write transaction deletes the account, its API keys, conversations, messages and every
feedback row (feedback/store.py, chat/auth.py), and marks each adapter trained on that feedback
as holding erased data (training/registry.py), switching what is served when the served one is
among them. Deleted rows are overwritten in the file (secure_delete) and the WAL, which still
holds their old pages, is checkpointed and truncated. A retraining run on the remaining
feedback is then queued, so the model learns again what everyone else taught it."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from chat import auth
from chat.config import Config
from chat.errors import BadInput, ChatError, NotFound
from feedback import sources
from feedback.store import Store, erase_user_rows
from retrieval import versions
from training import registry, runs
from training.config import TrainSettings
from training.runner import prepare

CANCEL_WAIT_S = 60.0  # a run cancelled because it read the user's rows ends at its next step


@dataclass
class Forgotten:
    user: str
    deleted: dict[str, int]  # rows per table
    versions_retired: list[str]  # adapters marked "contains erased data"
    served_before: str | None  # None: the base model
    served_now: str | None
    wal_truncated: bool  # False: a reader kept the WAL open; its old pages go at the next one
    retrievers_retired: list[str] = field(default_factory=list)  # retriever versions, likewise
    retriever_served_now: str | None = None  # None: the plain embedder
    run_cancelled: int | None = None  # a run that was reading the feedback when it was erased
    run_queued: int | None = None
    retrain_note: str | None = None  # why no run was queued, when none was

    def as_dict(self) -> dict:
        return asdict(self)


def check_forgettable(store: Store, name: str) -> None:
    """Refuse the last admin: nobody could administer the deployment afterwards."""
    account = auth.get_user(store, name)
    if account and account["role"] == "admin" and auth.count_users(store, "admin") <= 1:
        raise BadInput(f"{name} is the last admin; make another admin first")


def forget_user(store: Store, cfg: Config, name: str, requested_by: str | None = None,
                retrain: bool = True) -> Forgotten:
    """Delete `name` and their data, retire the adapters that learned from it, queue a retrain
    when the served adapter was one of them. NotFound when nothing of theirs exists."""
    with store.write() as db:
        check_forgettable(store, name)  # inside the transaction: two admins at once can't race
        marks = sources.erase_user(db, name)  # before the messages its rows point at
        erased = erase_user_rows(db, name)
        deleted = {"source_feedback": len(marks), **erased.counts,
                   **auth.erase_account(db, name)}
        if not any(deleted.values()):
            raise NotFound(f"no user {name!r} and no data of theirs")
        marked, before, now = registry.retire_erased(db, name, erased.preference_ids,
                                                     erased.rating_ids)
        # a thumbs-down blaming sources trained a retriever under its rating's key
        retriever_marked, retriever_now = versions.retire_erased(
            db, name, set(marks) | {f"r{i}" for i in erased.rating_ids})
    out = Forgotten(name, deleted, marked, before, now, wal_truncated=store.scrub(),
                    retrievers_retired=retriever_marked, retriever_served_now=retriever_now)
    going = runs.going_run(store)
    if going is not None and (erased.preference_ids or erased.rating_ids):
        runs.request_cancel(store, going)  # it may have read them: its adapter must not land
        out.run_cancelled = going
    else:
        going = None
    if before != now and retrain:
        out.run_queued, out.retrain_note = _queue_retrain(store, cfg, before, going,
                                                          requested_by)
    elif before != now:
        out.retrain_note = "not asked for"
    return out


def _queue_retrain(store: Store, cfg: Config, retired: str, going: int | None,
                   requested_by: str | None) -> tuple[int | None, str | None]:
    """A run with the retired adapter's settings on the feedback that remains."""
    if going is not None and not _ended(store, going, CANCEL_WAIT_S):
        return None, f"run {going} is still ending; start one with `train` when it has"
    settings = TrainSettings.from_dict(registry.get(store, retired)["meta"]
                                       .get("hyper_parameters"))
    try:
        prepare(store, cfg, settings)
        run_id, _ = runs.start_run(store, cfg, settings, requested_by)
    except ChatError as exc:  # too little feedback left, say
        return None, str(exc)
    return run_id, None


def _ended(store: Store, run_id: int, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while runs.going_run(store) == run_id:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True
