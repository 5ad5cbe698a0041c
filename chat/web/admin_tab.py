"""The admin tab: layout and wiring only; every handler goes through chat.web.admin's role
checks."""

import json
from pathlib import Path

import gradio as gr
import pandas as pd

from chat.auth import web_user
from chat.errors import ChatError
from chat.web import admin

METHODS = ["auto", "dpo", "kto", "rlhf"]
REASONS = ["", "wrong or missing source", "wrong facts", "not helpful", "too long", "unsafe",
           "other"]


def who(ctx, request: gr.Request | None) -> str:
    """The caller, from the login (never from session state a client can address)."""
    return web_user(ctx.cfg, request)


def guarded(fn):
    """Turn named errors into a gr.Error shown in the browser (nothing changes)."""
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ChatError as exc:
            raise gr.Error(str(exc)) from None
    return wrapper


def progress_html(run: dict | None) -> str:
    if not run:
        return "<div id='train-progress'>No training run yet.</div>"
    p = run.get("progress") or {}
    step, total = p.get("step") or 0, p.get("total") or 0
    done = run["status"] in ("succeeded", "rejected", "failed", "cancelled")
    pct = 100 if done and run["status"] == "succeeded" else int(100 * step / total) if total else 0
    label = f"run {run['id']} · {run['method']} · {run['status']} · {p.get('phase', '')}"
    if total:
        label += f" · step {step}/{total}"
    return (f"<div id='train-progress' data-status='{run['status']}'>"
            f"<div style='background:#eee;border-radius:6px'><div style='width:{pct}%;"
            f"background:#4a8;color:white;padding:4px;border-radius:6px'>{pct}%</div></div>"
            f"<small>{label}</small></div>")


def verdict_md(run: dict | None) -> str:
    """A finished run in words: the gate's verdict, its figures as a table, and why it failed."""
    if not run or run["status"] not in ("succeeded", "rejected", "failed", "cancelled"):
        return ""
    if run["status"] in ("failed", "cancelled"):
        return f"**Run {run['status']}**: {run.get('error') or ''}"
    metrics = run.get("metrics") or {}
    gate = metrics.get("gate", {})
    verdict = "passed" if gate.get("passed") else "failed"
    served = ("now served" if metrics.get("activated") else
              f"not activated: {metrics.get('not_activated_because') or 'activate was off'}"
              if gate.get("passed") else "never served")
    lines = [f"**Gate {verdict}** for {run.get('adapter_version')} ({run['method']}, {served})",
             "", "| check | candidate | compared with |", "|---|---|---|"]
    lines += [f"| {check} | {value} | {other} |" for check, value, other in gate_rows(gate)]
    lines += [""] + [f"- {reason}" for reason in gate.get("reasons", [])]
    return "\n".join(lines).rstrip()


def _num(value) -> str:
    return "—" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def gate_rows(gate: dict) -> list[tuple[str, str, str]]:
    """(check, candidate's figure, what it was compared with) for each check the gate ran."""
    rows = []
    if gate.get("n_heldout") is not None:
        held = "pairs" if gate.get("pref_kind", "pairs") == "pairs" else "thumbs"
        active = gate.get("pref_accuracy_active")
        rows.append((f"preference accuracy on {gate['n_heldout']} held-out {held}",
                     _num(gate.get("pref_accuracy")),
                     "no adapter active" if active is None else f"active adapter {_num(active)}"))
    if gate.get("ppl_candidate") is not None:
        rows.append(("perplexity on the reference set", _num(gate["ppl_candidate"]),
                     f"base model {_num(gate.get('ppl_base'))} "
                     f"(×{_num(gate.get('ppl_ratio'))})"))
    if gate.get("reward_candidate") is not None:
        rows.append(("reward model score", _num(gate["reward_candidate"]),
                     f"active {_num(gate.get('reward_active'))}"))
    return rows


def curve_frames(run: dict | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = (run or {}).get("curve", [])
    # rounded: the plots label their axes with the values as given (2.2288060188...)
    loss = [{"step": r["step"], "loss": round(r["loss"], 4)} for r in rows if "loss" in r]
    reward = [{"step": r["step"], "metric": k, "value": round(v, 4)} for r in rows
              for k, v in r.items() if k.startswith("rewards/") and isinstance(v, float)]
    return (pd.DataFrame(loss or [], columns=["step", "loss"]),
            pd.DataFrame(reward or [], columns=["step", "metric", "value"]))


def stats_md(stats: dict) -> str:
    """feedback_stats() as short tables: what came in, why answers were disliked (and whether
    that blames retrieval or generation), and how each adapter version fares."""
    kinds = stats["kinds"]
    lines = ["| " + " | ".join(k.replace("_", " ") for k in kinds) + " |",
             "|" + "---|" * len(kinds), "| " + " | ".join(str(v) for v in kinds.values()) + " |"]
    extras = [f"{name}: " + ", ".join(f"{k} {v}" for k, v in stats[key].items())
              for name, key in (("preferences by source", "preferences_by_source"),
                                ("comparisons by choice", "comparisons_by_choice"))
              if stats[key]]
    lines += ["", "; ".join(extras)] if extras else []
    if stats["reasons"]:
        from feedback.store import RATING_REASONS

        lines += ["", "| thumbs-down reason | n | blames |", "|---|---|---|"]
        lines += [f"| {reason} | {n} | {RATING_REASONS.get(reason, 'unspecified')} |"
                  for reason, n in stats["reasons"].items()]
    if stats["by_adapter"]:
        lines += ["", "| adapter | answers | thumbs up | thumbs down | thumbs-down rate |",
                  "|---|---|---|---|---|"]
        for version, s in stats["by_adapter"].items():
            rate = s["thumbs_down_rate"]
            lines.append(f"| {'base' if version == '(none)' else version} | {s['answers']} | "
                         f"{s['thumbs_up']} | {s['thumbs_down']} | "
                         f"{'—' if rate is None else f'{100 * rate:.0f}%'} |")
    return "\n".join(lines)


def serving_md(info: dict) -> str:
    return (f"**Serving** {info['model']} on {info['device']}, fast path `{info['fast_path']}`: "
            f"decode steps read {info['decode']}; prompts read {info['prompts']}.")


def _count_ids(ids) -> int:
    if isinstance(ids, dict):
        return sum(_count_ids(v) for v in ids.values())
    return len(ids) if isinstance(ids, list) else 0


# ---------------------------------------------------------------------------- handlers


def gradio_upload_folder() -> Path:
    """Where Gradio writes what a browser uploads (GRADIO_TEMP_DIR, else <tmp>/gradio)."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder())


def _dashboard(ctx, session, kind, reason, request: gr.Request):
    user = who(ctx, request)
    stats = serving_md(admin.serving(ctx, user)) + "\n\n" + stats_md(admin.dashboard(ctx, user))
    trend = pd.DataFrame(admin.thumbs_down_over_time(ctx, user),
                         columns=["day", "adapter", "down_rate", "n"])
    recent = pd.DataFrame(admin.recent_feedback(ctx, user, kind, reason),
                          columns=["kind", "created_at", "user", "answer", "detail", "reason"])
    return stats, trend, recent


def _upload(ctx, session, files, request: gr.Request):
    user = admin.check_admin(ctx, who(ctx, request))  # before any file is read
    uploads = [(getattr(f, "orig_name", None) or str(f).rsplit("/", 1)[-1],
                admin.read_upload(f, gradio_upload_folder())) for f in (files or [])]
    report = admin.upload_documents(ctx, user, uploads)
    return report, _documents(ctx, session, request)


def _documents(ctx, session, request: gr.Request):
    rows = admin.list_documents(ctx, who(ctx, request))
    return pd.DataFrame(rows or [], columns=list(rows[0]) if rows else ["id", "path"])


def _delete(ctx, session, doc_id, request: gr.Request):
    n = admin.delete_document(ctx, who(ctx, request), int(doc_id or 0))
    gr.Info(f"deleted document {int(doc_id)} ({n} chunks)")
    return _documents(ctx, session, request)


def _train_view(ctx, session, request: gr.Request):
    run = admin.training_status(ctx, who(ctx, request))
    loss, reward = curve_frames(run)
    return progress_html(run), loss, reward, verdict_md(run)


def _adapters(ctx, session, request: gr.Request):
    rows = admin.list_adapters(ctx, who(ctx, request))
    cols = ["version", "status", "method", "parent_version", "created_at", "activated_at",
            "n_feedback", "pref_accuracy", "ppl_ratio"]
    table = []
    for r in rows:
        meta, gate = r.get("meta") or {}, (r.get("metrics") or {}).get("gate", {})
        table.append([r["version"], r["status"], r["method"], r.get("parent_version"),
                      r["created_at"][:19], (r.get("activated_at") or "")[:19],
                      _count_ids(meta.get("feedback_ids")), gate.get("pref_accuracy"),
                      gate.get("ppl_ratio")])
    return pd.DataFrame(table, columns=cols)


def _start(ctx, session, method, activate, request: gr.Request):
    run_id = admin.start_training(ctx, who(ctx, request), method, bool(activate))
    gr.Info(f"training run {run_id} started ({method})")
    return _train_view(ctx, session, request)


def _cancel(ctx, session, request: gr.Request):
    run = admin.training_status(ctx, who(ctx, request))
    if run is None or run["status"] not in ("queued", "running"):
        raise ChatError("no training run is going")
    admin.cancel_training(ctx, who(ctx, request), run["id"])
    gr.Info(f"cancelling run {run['id']}")
    return _train_view(ctx, session, request)


def _activate(ctx, session, version, request: gr.Request):
    admin.activate_adapter(ctx, who(ctx, request), (version or "").strip())
    gr.Info(f"{version} is active")
    return _adapters(ctx, session, request)


def _rollback(ctx, session, request: gr.Request):
    now = admin.rollback_adapter(ctx, who(ctx, request))
    gr.Info(f"rolled back; now serving {now or 'the base model'}")
    return _adapters(ctx, session, request)


def _serve_base(ctx, session, request: gr.Request):
    retired = admin.serve_base_model(ctx, who(ctx, request))
    gr.Info(f"{retired} retired; now serving the base model")
    return _adapters(ctx, session, request)


def _compare(ctx, session, version, request: gr.Request):
    rows = admin.side_by_side(ctx, who(ctx, request), (version or "").strip())
    return pd.DataFrame(rows, columns=["question", "active", "candidate"])


def _export(ctx, session, fmt, request: gr.Request):
    return str(admin.export_file(ctx, who(ctx, request), fmt))


def _prompts(ctx, session, request: gr.Request):
    admin.check_admin(ctx, who(ctx, request))
    rows = ctx.service.prompts.list()
    return pd.DataFrame([[r["version"], r["status"], r["note"], r["system_prompt"][:120],
                          len(json.loads(r["few_shot_json"])) // 2] for r in rows],
                        columns=["version", "status", "note", "system_prompt", "few_shot"])


def _add_prompt(ctx, session, text, request: gr.Request):
    from chat.profiles import parse_profile

    user = admin.check_admin(ctx, who(ctx, request))
    profile, note = parse_profile(text or "")
    version = ctx.service.prompts.add(profile, user, note)
    gr.Info(f"added prompt profile v{version}")
    return _prompts(ctx, session, request)


def _activate_prompt(ctx, session, version, request: gr.Request):
    admin.check_admin(ctx, who(ctx, request))
    ctx.service.prompts.activate(int(version or 0))
    return _prompts(ctx, session, request)


def _preview_prompt(ctx, session, version, request: gr.Request):
    from chat.profiles import preview, preview_questions

    admin.check_admin(ctx, who(ctx, request))
    candidate = ctx.service.prompts.get(int(version or 0))
    rows = preview(ctx.service, candidate, preview_questions(ctx.store, 3))
    return pd.DataFrame(rows, columns=["question", "active", "candidate"])


# ---------------------------------------------------------------------------- layout


def render_admin_tab(ctx, session: gr.State) -> None:
    """Admin console sections; visible to all, usable by admins only (checked server-side)."""
    def wire(button, fn, inputs, outputs, name):
        # gradio injects gr.Request by annotation and counts positional inputs, so each arity
        # gets an explicit signature (no *args, no functools.partial)
        call = guarded(fn)
        if len(inputs) == 0:
            def handler(s: dict, request: gr.Request):
                return call(ctx, s, request=request)
        elif len(inputs) == 1:
            def handler(s: dict, a, request: gr.Request):
                return call(ctx, s, a, request=request)
        else:
            def handler(s: dict, a, b, request: gr.Request):
                return call(ctx, s, a, b, request=request)
        button.click(handler, [session, *inputs], outputs, api_name=name)

    def poll(s: dict, request: gr.Request):
        return _train_view(ctx, s, request) if admin_quiet(ctx, s, request) else (
            gr.skip(), gr.skip(), gr.skip(), gr.skip())

    with gr.Tab("Dashboard"):
        with gr.Row():
            kind = gr.Dropdown(["all", "rating", "correction", "preference"], value="all",
                               label="kind")
            reason = gr.Dropdown(REASONS, value="", label="reason")
            refresh = gr.Button("Refresh", elem_id="admin-refresh")
        stats = gr.Markdown(elem_id="feedback-stats")
        trend = gr.LinePlot(x="day", y="down_rate", color="adapter",
                            title="Thumbs-down rate per adapter version")
        recent = gr.Dataframe(label="Recent feedback", wrap=True)
        wire(refresh, _dashboard, [kind, reason], [stats, trend, recent], "admin_dashboard")
    with gr.Tab("Documents"):
        files = gr.File(file_count="multiple", label="Upload .txt .md .html .pdf",
                        file_types=sorted(admin.ALLOWED_UPLOADS))
        with gr.Row():
            upload = gr.Button("Ingest uploads", variant="primary")
            list_docs = gr.Button("List documents")
            doc_id = gr.Number(label="document id", precision=0, minimum=1, maximum=2**53)
            delete = gr.Button("Delete document", variant="stop")
        report = gr.JSON(label="Ingest report")
        docs = gr.Dataframe(label="Documents")
        wire(upload, _upload, [files], [report, docs], "admin_upload")
        wire(list_docs, _documents, [], [docs], "admin_documents")
        wire(delete, _delete, [doc_id], [docs], "admin_delete_document")
    with gr.Tab("Training"):
        with gr.Row():
            method = gr.Dropdown(METHODS, value="auto", label="method", elem_id="train-method")
            activate = gr.Checkbox(True, label="activate if the gate passes")
            start = gr.Button("Start training", variant="primary", elem_id="train-start")
            cancel = gr.Button("Cancel", variant="stop")
        progress = gr.HTML(progress_html(None))
        with gr.Row():
            loss = gr.LinePlot(x="step", y="loss", title="Loss")
            reward = gr.LinePlot(x="step", y="value", color="metric",
                                 title="Reward accuracy / margins")
        verdict = gr.Markdown(elem_id="gate-verdict")
        view = [progress, loss, reward, verdict]
        wire(start, _start, [method, activate], view, "admin_train")
        wire(cancel, _cancel, [], view, "admin_cancel")
        timer = gr.Timer(2.0)
        timer.tick(poll, [session], view, api_name=False, show_progress="hidden")
    with gr.Tab("Adapters"):
        with gr.Row():
            version = gr.Textbox(label="version (e.g. v0002)")
            list_ad = gr.Button("List")
            act = gr.Button("Activate", variant="primary")
            back = gr.Button("Roll back")
            base = gr.Button("Serve the base model")
            compare = gr.Button("Side by side with active")
        table = gr.Dataframe(label="Adapters")
        sbs = gr.Dataframe(label="Active vs candidate on held-out questions", wrap=True,
                           headers=["question", "active", "candidate"])
        wire(list_ad, _adapters, [], [table], "admin_adapters")
        wire(act, _activate, [version], [table], "admin_activate")
        wire(back, _rollback, [], [table], "admin_rollback")
        wire(base, _serve_base, [], [table], "admin_serve_base")
        wire(compare, _compare, [version], [sbs], "admin_side_by_side")
    with gr.Tab("Prompts"):
        prompt_json = gr.Code(language="json", label="new profile (JSON)", value=json.dumps(
            {"system_prompt": ctx.cfg.system_prompt, "few_shot": [], "note": ""}, indent=2))
        with gr.Row():
            pversion = gr.Number(label="profile version", precision=0, minimum=1, maximum=2**53)
            list_p = gr.Button("List")
            add_p = gr.Button("Add")
            act_p = gr.Button("Activate")
            prev_p = gr.Button("Preview vs active")
        profiles = gr.Dataframe(label="Prompt profiles", wrap=True)
        preview = gr.Dataframe(label="Preview", wrap=True)
        wire(list_p, _prompts, [], [profiles], "admin_prompts")
        wire(add_p, _add_prompt, [prompt_json], [profiles], "admin_add_prompt")
        wire(act_p, _activate_prompt, [pversion], [profiles], "admin_activate_prompt")
        wire(prev_p, _preview_prompt, [pversion], [preview], "admin_preview_prompt")
    with gr.Tab("Export"):
        fmt = gr.Dropdown(["dpo", "kto", "raw"], value="dpo", label="format")
        go = gr.Button("Export JSONL")
        out = gr.File(label="download")
        wire(go, _export, [fmt], [out], "admin_export")


def admin_quiet(ctx, session, request) -> bool:
    """Poll training progress only for admins (others get nothing, silently)."""
    try:
        admin.check_admin(ctx, who(ctx, request))
    except ChatError:
        return False
    return True
