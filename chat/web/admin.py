"""Admin console logic: plain functions, each checks the caller's role on the server side."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from chat import auth
from chat.errors import BadInput, NotFound
from chat.forget import forget_user
from chat.profiles import parse_profile, preview, preview_questions
from chat.runtime import Runtime
from chat.web.uploads import browser_files, file_name, safe_upload_name
from feedback import stats
from feedback.export import export_rows, write_jsonl
from feedback.stats import feedback_stats
from retrieval import ingest
from retrieval.parse import sha256
from training import registry, runner, runs
from training.config import TrainSettings


def check_admin(ctx: Runtime, user: str | None) -> str:
    return ctx.authorizer.require(user, "admin")


def is_admin(ctx: Runtime, user: str | None) -> bool:
    """For what only admins are shown and others are not told about (training progress)."""
    return ctx.authorizer.is_admin(user)


# ---------------------------------------------------------------------------- dashboard


def dashboard(ctx, user: str | None) -> dict:
    """Feedback counts, reasons, retrieval-vs-generation blame and per-version rates."""
    check_admin(ctx, user)
    return feedback_stats(ctx.store)


def serving(ctx, user: str | None) -> dict:
    """What answers are computed with: model, device, fast path and the weights its decode
    steps and prompts read (with the reason where the exact block kernels are not used)."""
    check_admin(ctx, user)
    engine = ctx.service.engine
    return {"model": ctx.cfg.base_model, "device": engine.device,
            "fast_path": engine.fast_mode, **engine.kernels()}


def thumbs_down_over_time(ctx, user: str | None) -> tuple[list[dict], list[dict]]:
    """Thumbs-down rate per adapter version per day, and when each version began to be served
    (the moments the plot marks)."""
    check_admin(ctx, user)
    return stats.thumbs_down_by_day(ctx.store), registry.serving_history(ctx.store)


def recent_feedback(ctx, user: str | None, kind: str = "all", reason: str = "",
                    limit: int = 50) -> list[dict]:
    """Latest ratings, corrections and preferences, newest first, optionally filtered."""
    check_admin(ctx, user)
    rows = stats.recent_feedback(ctx.store, kind, reason, limit)
    return [{**r, "answer": (r["answer"] or "")[:200], "detail": (r["detail"] or "")[:200]}
            for r in rows]


# ---------------------------------------------------------------------------- documents


def _new_uploads(ctx, files: list[tuple[str, bytes]]) -> tuple[list[tuple[str, str, bytes]],
                                                                int]:
    """(original name, generated name, data) of each upload not already a document, and how
    many were."""
    limit = int(ctx.cfg.max_file_mb * 1024 * 1024)
    checked, seen, skipped = [], set(), 0
    for original, data in files:  # check everything before writing anything
        if len(data) > limit:
            raise BadInput(f"{original!r} is larger than {ctx.cfg.max_file_mb:g} MiB")
        name, digest = safe_upload_name(original), sha256(data)
        # stored names are random, so the ingest's own check (same path) never sees a repeat
        if digest in seen or ingest.has_content(ctx.store, digest):
            skipped += 1
            continue
        seen.add(digest)
        checked.append((original, name, data))
    return checked, skipped


def upload_files(ctx: Runtime, user: str | None, paths: list[str] | None,
                 upload_folder: Path) -> dict:
    """upload_documents for files Gradio received into `upload_folder` (role checked first,
    before any file is read)."""
    user = check_admin(ctx, user)
    if not paths:
        raise BadInput("choose one or more files to ingest first")
    return upload_documents(ctx, user, browser_files(paths, upload_folder))


def upload_documents(ctx, user: str | None, files: list[tuple[str, bytes]]) -> dict:
    """Store uploads under generated names inside DATA_DIR/uploads, then ingest them; a file
    whose content is already a document is skipped."""
    check_admin(ctx, user)
    folder = _uploads(ctx)
    folder.mkdir(parents=True, exist_ok=True)
    with _UPLOADING:  # check + ingest as one step: a double click must not add it twice
        checked, skipped = _new_uploads(ctx, files)
        originals = {}
        for original, name, data in checked:
            target = (folder / name).resolve()
            if target.parent != folder:
                raise BadInput("the upload would land outside the data folder")
            target.write_bytes(data)
            originals[str(target)] = original
        report = ctx.service.retriever.ingest([Path(p) for p in originals])
    report.skipped += skipped
    _title_from_original_names(ctx, originals)
    for err in report.errors:
        if err["path"] in originals:
            Path(err["path"]).unlink(missing_ok=True)  # nothing stays for a rejected file
            err["path"] = originals[err["path"]]  # the name the admin knows
    return report.as_json()


_UPLOADING = threading.Lock()


def _title_from_original_names(ctx, originals: dict[str, str]) -> None:
    """A document titled by its file name (no heading or metadata title) gets the name the
    admin uploaded, not the generated one."""
    ingest.retitle(ctx.store, {path: (Path(path).stem, Path(file_name(original)).stem[:300])
                               for path, original in originals.items()})


def _uploads(ctx) -> Path:
    return (ctx.cfg.data_dir / "uploads").resolve()


def list_documents(ctx, user: str | None) -> list[dict]:
    check_admin(ctx, user)
    return ctx.service.retriever.documents()


def delete_document(ctx, user: str | None, document_id: int) -> int:
    """Delete a document's chunks; a file uploaded through the console goes with it."""
    check_admin(ctx, user)
    row = ingest.get_document(ctx.store, int(document_id))
    n = ctx.service.retriever.delete(int(document_id))
    if row and Path(row["path"]).resolve().parent == _uploads(ctx):
        Path(row["path"]).unlink(missing_ok=True)
    return n


# ---------------------------------------------------------------------------- training


def start_training(ctx, user: str | None, method: str = "auto", activate: bool = True) -> int:
    """Create a run and start it in its own process; returns the run id."""
    name = check_admin(ctx, user)
    try:
        settings = TrainSettings.for_config(ctx.cfg, method=method, activate=activate)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    runner.prepare(ctx.store, ctx.cfg, settings)  # NotEnoughData before anything starts
    run_id, _ = runs.start_run(ctx.store, ctx.cfg, settings, name)
    return run_id


def cancel_training(ctx, user: str | None, run_id: int | None = None) -> int:
    """Ask a run to stop (the latest, if none is given); returns its id."""
    check_admin(ctx, user)
    if run_id is None:
        run = training_status(ctx, user)
        if run is None or run["status"] not in ("queued", "running"):
            raise BadInput("no training run is going")
        run_id = run["id"]
    runs.request_cancel(ctx.store, int(run_id))
    return int(run_id)


def training_status(ctx, user: str | None, run_id: int | None = None) -> dict | None:
    """The run (latest if none given) with its progress and the loss/reward curve points."""
    check_admin(ctx, user)
    if run_id is None:
        run_id = runs.latest_run_id(ctx.store)
        if run_id is None:
            return None
    run = runs.get_run(ctx.store, int(run_id))
    run["curve"] = runs.curve(ctx.store, int(run_id))
    return run


# ---------------------------------------------------------------------------- adapters


def list_adapters(ctx, user: str | None) -> list[dict]:
    check_admin(ctx, user)
    return registry.list_adapters(ctx.store)


def activate_adapter(ctx, user: str | None, version: str) -> dict:
    check_admin(ctx, user)
    return registry.activate(ctx.store, registry.check_version(version), ctx.cfg.base_model)


def rollback_adapter(ctx, user: str | None) -> str | None:
    check_admin(ctx, user)
    return registry.rollback(ctx.store, ctx.cfg.base_model)


def serve_base_model(ctx, user: str | None) -> str:
    """Retire the active adapter (the base model is served); returns that adapter's version."""
    check_admin(ctx, user)
    return registry.deactivate(ctx.store)


def side_by_side(ctx, user: str | None, version: str, n: int = 3) -> list[dict]:
    """The active and a candidate adapter answering the same held-out questions."""
    check_admin(ctx, user)
    registry.get(ctx.store, registry.check_version(version))
    params = replace(ctx.service.default_params(), temperature=0.0, max_new_tokens=96)
    profile = ctx.service.profile()
    active = registry.active_version(ctx.store)
    return [{"question": q,
             "active": ctx.service.draft_answer(q, profile, params, active),
             "candidate": ctx.service.draft_answer(q, profile, params, version)}
            for q in preview_questions(ctx.store, n)]


# ---------------------------------------------------------------------------- prompts


def prompt_profiles(ctx: Runtime, user: str | None) -> list[dict]:
    check_admin(ctx, user)
    return ctx.service.prompts.list()


def add_prompt(ctx: Runtime, user: str | None, text: str | None) -> int:
    """Store a new draft profile from its JSON text; returns its version."""
    user = check_admin(ctx, user)
    profile, note = parse_profile(text or "")
    return ctx.service.prompts.add(profile, user, note)


def prompt_profile(ctx: Runtime, user: str | None, version: int | None) -> dict:
    """One profile's row, to confirm its activation; refused when it is already served."""
    check_admin(ctx, user)
    row = next((r for r in ctx.service.prompts.list() if r["version"] == int(version or 0)),
               None)
    if row is None:
        raise NotFound(f"no prompt profile version {int(version or 0)}")
    if row["status"] == "active":
        raise BadInput(f"prompt profile v{row['version']} is already active")
    return row


def activate_prompt(ctx: Runtime, user: str | None, version: int | None) -> None:
    check_admin(ctx, user)
    ctx.service.prompts.activate(int(version or 0))


def preview_prompt(ctx: Runtime, user: str | None, version: int | None,
                   n: int = 3) -> list[dict]:
    """The active and a candidate profile answering the same held-out questions."""
    check_admin(ctx, user)
    candidate = ctx.service.prompts.get(int(version or 0))
    return preview(ctx.service, candidate, preview_questions(ctx.store, n))


# ---------------------------------------------------------------------------- export


def export_file(ctx, user: str | None, fmt: str) -> Path:
    """Write a DPO/KTO/raw JSONL export to a temporary file only its admin may download."""
    user = check_admin(ctx, user)
    rows = export_rows(ctx.store, fmt, ctx.service.profile())  # framed as training frames them
    out = ctx.downloads.new_file(user, f"feedback-{fmt}", ".jsonl")
    write_jsonl(rows, out)
    return out


# ---------------------------------------------------------------------------- users


def list_users(ctx, user: str | None) -> list[dict]:
    check_admin(ctx, user)
    return auth.list_users(ctx.store)


def forget(ctx, user: str | None, name: str, confirm: str) -> dict:
    """Erase a user (chat/forget.py); the name typed twice, as a confirmation."""
    admin_name = check_admin(ctx, user)
    name = (name or "").strip()
    if not name or name != (confirm or "").strip():
        raise BadInput("type the user's name in both boxes to confirm")
    return forget_user(ctx.store, ctx.cfg, name, requested_by=admin_name).as_dict()
