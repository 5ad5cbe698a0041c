"""Admin console logic: plain functions, each checks the caller's role on the server side."""

from __future__ import annotations

import json
import re
import secrets
import threading
from pathlib import Path

from chat.auth import require_admin
from chat.errors import BadInput

ALLOWED_UPLOADS = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf"}


def check_admin(ctx, user: str | None) -> str:
    return require_admin(ctx.store, user, ctx.cfg)


# ---------------------------------------------------------------------------- dashboard


def dashboard(ctx, user: str | None) -> dict:
    """Feedback counts, reasons, retrieval-vs-generation blame and per-version rates."""
    from feedback.stats import feedback_stats

    check_admin(ctx, user)
    return feedback_stats(ctx.store)


def serving(ctx, user: str | None) -> dict:
    """What answers are computed with: model, device, fast path and the weights its decode
    steps and prompts read (with the reason where the exact block kernels are not used)."""
    check_admin(ctx, user)
    engine = ctx.service.engine
    return {"model": ctx.cfg.base_model, "device": engine.device,
            "fast_path": engine.fast_mode, **engine.kernels()}


def thumbs_down_over_time(ctx, user: str | None) -> list[dict]:
    """Thumbs-down rate per adapter version per day (rows for a line plot)."""
    check_admin(ctx, user)
    return ctx.store.query(
        "SELECT substr(r.created_at, 1, 10) AS day, coalesce(m.adapter_version, 'base') "
        "AS adapter, avg(r.value = -1) AS down_rate, count(*) AS n FROM ratings r "
        "JOIN messages m ON m.id = r.message_id GROUP BY day, adapter ORDER BY day, adapter")


def recent_feedback(ctx, user: str | None, kind: str = "all", reason: str = "",
                    limit: int = 50) -> list[dict]:
    """Latest ratings, corrections and preferences, newest first, optionally filtered."""
    check_admin(ctx, user)
    parts = {
        "rating": "SELECT 'rating' AS kind, r.created_at, r.user, m.content AS answer, "
                  "CASE r.value WHEN 1 THEN 'up' ELSE 'down' END || "
                  "coalesce(': ' || r.reason, '') || coalesce(' - ' || r.comment, '') AS detail, "
                  "r.reason AS reason FROM ratings r JOIN messages m ON m.id = r.message_id",
        "correction": "SELECT 'correction', c.created_at, c.user, m.content, c.content, NULL "
                      "FROM corrections c JOIN messages m ON m.id = c.message_id",
        "preference": "SELECT 'preference', created_at, user, rejected, 'chosen: ' || chosen, "
                      "NULL FROM preferences WHERE source != 'correction'",
    }
    if kind != "all" and kind not in parts:
        raise BadInput(f"unknown feedback kind {kind!r}")
    chosen = parts.values() if kind == "all" else [parts[kind]]
    sql = " UNION ALL ".join(chosen)
    where, params = "", []
    if reason:
        where, params = "WHERE reason = ?", [reason]
    rows = ctx.store.query(f"SELECT * FROM ({sql}) {where} ORDER BY created_at DESC LIMIT ?",
                           [*params, limit])
    return [{**r, "answer": (r["answer"] or "")[:200], "detail": (r["detail"] or "")[:200]}
            for r in rows]


# ---------------------------------------------------------------------------- documents


def _file_name(original: str) -> str:
    """The last part of a name a browser sent (it may hold a Windows or POSIX path)."""
    return re.split(r"[\\/]", original)[-1]


def safe_upload_name(original: str) -> str:
    """A server-generated file name that keeps only a known extension of the original."""
    if "\x00" in original:
        raise BadInput("the file name contains a NUL character")
    base = _file_name(original)
    ext = Path(base).suffix.lower()
    if ext not in ALLOWED_UPLOADS:
        raise BadInput(f"unsupported file type {ext or '(none)'!r}; allowed: "
                       f"{', '.join(sorted(ALLOWED_UPLOADS))}")
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(base).stem).strip("-")[:40] or "document"
    return f"{secrets.token_hex(6)}-{stem}{ext}"


def _new_uploads(ctx, files: list[tuple[str, bytes]]) -> tuple[list[tuple[str, str, bytes]],
                                                                int]:
    """(original name, generated name, data) of each upload not already a document, and how
    many were."""
    from retrieval.parse import sha256

    limit = int(ctx.cfg.max_file_mb * 1024 * 1024)
    checked, seen, skipped = [], set(), 0
    for original, data in files:  # check everything before writing anything
        if len(data) > limit:
            raise BadInput(f"{original!r} is larger than {ctx.cfg.max_file_mb:g} MiB")
        name, digest = safe_upload_name(original), sha256(data)
        # stored names are random, so the ingest's own check (same path) never sees a repeat
        if digest in seen or ctx.store.one("SELECT 1 FROM documents WHERE sha256 = ?",
                                           (digest,)):
            skipped += 1
            continue
        seen.add(digest)
        checked.append((original, name, data))
    return checked, skipped


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
    with ctx.store.write() as db:
        for path, original in originals.items():
            db.conn.execute("UPDATE documents SET title = ? WHERE path = ? AND title = ?",
                            (Path(_file_name(original)).stem[:300], path,
                             Path(path).stem))


def _uploads(ctx) -> Path:
    return (ctx.cfg.data_dir / "uploads").resolve()


def read_upload(path: str | Path, upload_folder: Path) -> bytes:
    """Bytes of a file the browser uploaded: only a regular file inside `upload_folder`
    (Gradio's), never a path a client named elsewhere on the server, nor a symlink."""
    path = Path(path)
    if path.is_symlink():
        raise BadInput("symbolic links are not accepted")
    if not path.resolve().is_relative_to(upload_folder.resolve()) or not path.is_file():
        raise BadInput("only files uploaded through this page are accepted")
    return path.read_bytes()


def list_documents(ctx, user: str | None) -> list[dict]:
    check_admin(ctx, user)
    return ctx.service.retriever.documents()


def delete_document(ctx, user: str | None, document_id: int) -> int:
    """Delete a document's chunks; a file uploaded through the console goes with it."""
    check_admin(ctx, user)
    row = ctx.store.one("SELECT path FROM documents WHERE id = ?", (int(document_id),))
    n = ctx.service.retriever.delete(int(document_id))
    if row and Path(row["path"]).resolve().parent == _uploads(ctx):
        Path(row["path"]).unlink(missing_ok=True)
    return n


# ---------------------------------------------------------------------------- training


def start_training(ctx, user: str | None, method: str = "auto", activate: bool = True) -> int:
    """Create a run and start it in its own process; returns the run id."""
    from training import runner, runs
    from training.config import TrainSettings

    name = check_admin(ctx, user)
    try:
        settings = TrainSettings.for_config(ctx.cfg, method=method, activate=activate)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    runner.prepare(ctx.store, ctx.cfg, settings)  # NotEnoughData before anything starts
    run_id, _ = runs.start_run(ctx.store, ctx.cfg, settings, name)
    return run_id


def cancel_training(ctx, user: str | None, run_id: int) -> None:
    from training import runs

    check_admin(ctx, user)
    runs.request_cancel(ctx.store, int(run_id))


def training_status(ctx, user: str | None, run_id: int | None = None) -> dict | None:
    """The run (latest if none given) with its progress and the loss/reward curve points."""
    from training import runs

    check_admin(ctx, user)
    if run_id is None:
        row = ctx.store.one("SELECT id FROM training_runs ORDER BY id DESC LIMIT 1")
        if row is None:
            return None
        run_id = row["id"]
    run = runs.get_run(ctx.store, int(run_id))
    events = ctx.store.query("SELECT step, total, metrics_json FROM training_events "
                             "WHERE run_id = ? ORDER BY id", (run_id,))
    run["curve"] = [{"step": e["step"], **json.loads(e["metrics_json"])} for e in events]
    return run


# ---------------------------------------------------------------------------- adapters


def list_adapters(ctx, user: str | None) -> list[dict]:
    from training import registry

    check_admin(ctx, user)
    return registry.list_adapters(ctx.store)


def activate_adapter(ctx, user: str | None, version: str) -> dict:
    from training import registry

    check_admin(ctx, user)
    return registry.activate(ctx.store, registry.check_version(version), ctx.cfg.base_model)


def rollback_adapter(ctx, user: str | None) -> str | None:
    from training import registry

    check_admin(ctx, user)
    return registry.rollback(ctx.store, ctx.cfg.base_model)


def serve_base_model(ctx, user: str | None) -> str:
    """Retire the active adapter (the base model is served); returns that adapter's version."""
    from training import registry

    check_admin(ctx, user)
    return registry.deactivate(ctx.store)


def side_by_side(ctx, user: str | None, version: str, n: int = 3) -> list[dict]:
    """The active and a candidate adapter answering the same held-out questions."""
    from chat.engine.engine import GenParams
    from chat.profiles import preview_questions
    from training import registry

    check_admin(ctx, user)
    registry.get(ctx.store, registry.check_version(version))
    params = GenParams(temperature=0.0, max_new_tokens=96)
    profile = ctx.service.profile()
    active = registry.active_version(ctx.store)
    return [{"question": q,
             "active": ctx.service.draft_answer(q, profile, params, active),
             "candidate": ctx.service.draft_answer(q, profile, params, version)}
            for q in preview_questions(ctx.store, n)]


# ---------------------------------------------------------------------------- export


def export_file(ctx, user: str | None, fmt: str) -> Path:
    """Write a DPO/KTO/raw JSONL export to a temporary file only its admin may download."""
    from feedback.export import export_rows, write_jsonl

    user = check_admin(ctx, user)
    rows = export_rows(ctx.store, fmt, ctx.service.profile())  # framed as training frames them
    out = ctx.downloads.new_file(user, f"feedback-{fmt}", ".jsonl")
    write_jsonl(rows, out)
    return out
