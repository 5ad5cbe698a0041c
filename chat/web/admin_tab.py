"""The admin tab: wires the sections laid out in chat/web/admin_layout.py. Each handler calls
a chat.web.admin function (which checks the caller's role on the server side) and draws what
it returns with chat/web/admin_views.py."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import pandas as pd
from gradio.utils import get_upload_folder

from chat.errors import ChatError
from chat.runtime import Runtime
from chat.web import admin
from chat.web.admin_layout import (
    Adapters,
    Dashboard,
    Documents,
    Export,
    Prompts,
    Training,
    Users,
    render_adapters,
    render_dashboard,
    render_documents,
    render_export,
    render_prompts,
    render_training,
    render_users,
)
from chat.web.admin_views import (
    adapters_frame,
    dashboard_view,
    documents_frame,
    progress_html,
    prompts_frame,
    run_ended,
    side_by_side_html,
    training_view,
    verdict_md,
)
from chat.web.plots import run_figures

# Every admin event takes the session first (clients call them so), then its section's
# inputs. Gradio passes gr.Request by annotation and counts positional inputs, so each
# handler has a signature of its own (no *args, no functools.partial).


@contextmanager
def _caller(ctx: Runtime, request: gr.Request | None) -> Iterator[str]:
    """The caller's login; a named error inside (a refusal: nothing to roll back, not an
    admin, ...) becomes a message in the browser titled "Not done", no server traceback,
    and nothing changes."""
    try:
        yield ctx.authorizer.web_user(request)
    except ChatError as exc:
        raise gr.Error(str(exc), title="Not done", print_exception=False) from None


def gradio_upload_folder() -> Path:
    """Where Gradio writes what a browser uploads (GRADIO_TEMP_DIR, else <tmp>/gradio)."""
    return Path(get_upload_folder())


def _hidden():
    return gr.update(visible=False)


def _filled_on_open(ctx: Runtime, session: gr.State, tab: gr.Tab, read, output) -> None:
    """A section's table filled as its tab opens, so it never says "nothing yet" about what
    exists; left as it is for someone who is not an admin (the tab shows to all), no error."""
    def on_open(_session: dict, request: gr.Request):
        try:
            return read(ctx.authorizer.web_user(request))
        except ChatError:
            return gr.skip()
    tab.select(on_open, [session], [output], api_name=False)


# ---------------------------------------------------------------------------- dashboard


def _dashboard(ctx: Runtime, user: str, kind: str, reason: str):
    return dashboard_view(admin.serving(ctx, user), admin.dashboard(ctx, user),
                          admin.thumbs_down_over_time(ctx, user),
                          admin.recent_feedback(ctx, user, kind, reason))


def _wire_dashboard(ctx: Runtime, session: gr.State, ui: Dashboard, opened) -> None:
    def refresh(_session: dict, kind: str, reason: str, request: gr.Request):
        with _caller(ctx, request) as user:
            return _dashboard(ctx, user, kind, reason)

    def on_open(_session: dict, kind: str, reason: str, request: gr.Request):
        """Filled as the console opens; the tab shows to everyone, so a user who is not an
        admin gets it left empty, without an error."""
        try:
            return _dashboard(ctx, ctx.authorizer.web_user(request), kind, reason)
        except ChatError:
            return gr.skip(), gr.skip(), gr.skip()

    outputs = [ui.stats, ui.trend, ui.recent]
    ui.refresh.click(refresh, [session, ui.kind, ui.reason], outputs, api_name="admin_dashboard")
    opened.select(on_open, [session, ui.kind, ui.reason], outputs,
                  api_name="admin_dashboard_open")


# ---------------------------------------------------------------------------- documents


def _wire_documents(ctx: Runtime, session: gr.State, ui: Documents) -> None:
    def upload(_session: dict, files: list[str] | None, request: gr.Request):
        with _caller(ctx, request) as user:
            report = admin.upload_files(ctx, user, files, gradio_upload_folder())
            return report, documents_frame(admin.list_documents(ctx, user))

    def listed(_session: dict, request: gr.Request):
        with _caller(ctx, request) as user:
            return documents_frame(admin.list_documents(ctx, user))

    def delete(_session: dict, doc_id: float | None, request: gr.Request):
        with _caller(ctx, request) as user:
            n = admin.delete_document(ctx, user, int(doc_id or 0))
            gr.Info(f"deleted document {int(doc_id)} ({n} chunks)")
            return documents_frame(admin.list_documents(ctx, user))

    _filled_on_open(ctx, session, ui.tab,
                    lambda user: documents_frame(admin.list_documents(ctx, user)), ui.table)
    ui.upload.click(upload, [session, ui.files], [ui.report, ui.table], api_name="admin_upload")
    ui.list.click(listed, [session], [ui.table], api_name="admin_documents")
    ui.delete.click(delete, [session, ui.doc_id], [ui.table], api_name="admin_delete_document")


# ---------------------------------------------------------------------------- training


def _wire_training(ctx: Runtime, session: gr.State, ui: Training) -> None:
    def start(_session: dict, method: str, activate: bool, request: gr.Request):
        with _caller(ctx, request) as user:
            run_id = admin.start_training(ctx, user, method, bool(activate))
            gr.Info(f"training run {run_id} started ({method})")
            return training_view(admin.training_status(ctx, user))

    def cancel(_session: dict, request: gr.Request):
        with _caller(ctx, request) as user:
            gr.Info(f"cancelling run {admin.cancel_training(ctx, user)}")
            return training_view(admin.training_status(ctx, user))

    def poll(_session: dict, seen: dict | None, request: gr.Request):
        # progress goes to admins only; anyone else is told nothing, not even a refusal
        try:
            user = ctx.authorizer.web_user(request)
        except ChatError:
            user = None
        if not admin.is_admin(ctx, user):
            return (gr.skip(),) * (len(ui.view) + 1)
        run = admin.training_status(ctx, user)
        ended, now = run_ended(run, seen)
        if ended:  # on every admin page that watched the run
            gr.Info(ended, duration=15)
        looked = {**(now or {"id": None}), "points": len((run or {}).get("curve", []))}
        same = seen is not None and all(seen.get(k) == looked[k] for k in ("id", "points"))
        plots = (gr.skip(), gr.skip()) if same else run_figures(run)  # drawn on a change only
        return progress_html(run), *plots, verdict_md(run), looked

    ui.start.click(start, [session, ui.method, ui.activate], ui.view, api_name="admin_train")
    ui.cancel.click(cancel, [session], ui.view, api_name="admin_cancel")
    ui.timer.tick(poll, [session, ui.seen], [*ui.view, ui.seen], api_name=False,
                  show_progress="hidden")


# ---------------------------------------------------------------------------- adapters


def _wire_adapters(ctx: Runtime, session: gr.State, ui: Adapters) -> None:
    def listed(_session: dict, request: gr.Request):
        with _caller(ctx, request) as user:
            return adapters_frame(admin.list_adapters(ctx, user))

    def activate(_session: dict, version: str, request: gr.Request):
        with _caller(ctx, request) as user:
            admin.activate_adapter(ctx, user, (version or "").strip())
            gr.Info(f"{version} is active")
            return adapters_frame(admin.list_adapters(ctx, user))

    def rollback(_session: dict, request: gr.Request):
        with _caller(ctx, request) as user:
            now = admin.rollback_adapter(ctx, user)
            gr.Info(f"rolled back; now serving {now or 'the base model'}")
            return adapters_frame(admin.list_adapters(ctx, user))

    def serve_base(_session: dict, request: gr.Request):
        with _caller(ctx, request) as user:
            gr.Info(f"{admin.serve_base_model(ctx, user)} retired; now serving the base model")
            return adapters_frame(admin.list_adapters(ctx, user))

    def side_by_side(_session: dict, version: str, request: gr.Request):
        with _caller(ctx, request) as user:
            return side_by_side_html(admin.side_by_side(ctx, user, (version or "").strip()))

    _filled_on_open(ctx, session, ui.tab,
                    lambda user: adapters_frame(admin.list_adapters(ctx, user)), ui.table)
    ui.list.click(listed, [session], [ui.table], api_name="admin_adapters")
    ui.activate.click(activate, [session, ui.version], [ui.table], api_name="admin_activate")
    ui.rollback.click(rollback, [session], [ui.table], api_name="admin_rollback")
    ui.base.click(serve_base, [session], [ui.table], api_name="admin_serve_base")
    ui.compare.click(side_by_side, [session, ui.version], [ui.side_by_side],
                     api_name="admin_side_by_side")


# ---------------------------------------------------------------------------- prompts


def _wire_prompts(ctx: Runtime, session: gr.State, ui: Prompts) -> None:
    def listed(_session: dict, request: gr.Request):
        with _caller(ctx, request) as user:
            return prompts_frame(admin.prompt_profiles(ctx, user))

    def add(_session: dict, text: str, request: gr.Request):
        with _caller(ctx, request) as user:
            gr.Info(f"added prompt profile v{admin.add_prompt(ctx, user, text)}")
            return prompts_frame(admin.prompt_profiles(ctx, user))

    def ask_first(_session: dict, version: float | None, request: gr.Request):
        with _caller(ctx, request) as user:
            profile = admin.prompt_profile(ctx, user, version)
            note = (profile["note"] or "no note").replace("`", "'")  # shown as written
            return gr.Column(visible=True), (
                f"Serve prompt profile **v{profile['version']}** (`{note}`) to every user, "
                "from their next question?")

    def activate(_session: dict, version: float | None, request: gr.Request):
        with _caller(ctx, request) as user:
            admin.activate_prompt(ctx, user, version)
            gr.Info(f"prompt profile v{int(version)} is active")
            return prompts_frame(admin.prompt_profiles(ctx, user)), gr.Column(visible=False)

    def preview(_session: dict, version: float | None, request: gr.Request):
        with _caller(ctx, request) as user:
            return side_by_side_html(admin.preview_prompt(ctx, user, version))

    _filled_on_open(ctx, session, ui.tab,
                    lambda user: prompts_frame(admin.prompt_profiles(ctx, user)), ui.table)
    ui.list.click(listed, [session], [ui.table], api_name="admin_prompts")
    ui.add.click(add, [session, ui.profile], [ui.table], api_name="admin_add_prompt")
    # the question names the box's version: put away first, and whenever the box changes
    ui.activate.click(_hidden, None, [ui.confirm_row], api_name=False).then(
        ask_first, [session, ui.version], [ui.confirm_row, ui.confirm_text], api_name=False)
    for event in (ui.keep.click, ui.version.change):
        event(_hidden, None, [ui.confirm_row], api_name=False)
    ui.confirm.click(activate, [session, ui.version], [ui.table, ui.confirm_row],
                     api_name="admin_activate_prompt")
    ui.preview.click(preview, [session, ui.version], [ui.previewed],
                     api_name="admin_preview_prompt")


# ---------------------------------------------------------------------------- export


def _wire_export(ctx: Runtime, session: gr.State, ui: Export) -> None:
    def export(_session: dict, fmt: str, request: gr.Request):
        with _caller(ctx, request) as user:
            return str(admin.export_file(ctx, user, fmt))

    ui.go.click(export, [session, ui.format], [ui.file], api_name="admin_export")


# ---------------------------------------------------------------------------- users


def _wire_users(ctx: Runtime, session: gr.State, ui: Users) -> None:
    def listed(_session: dict, request: gr.Request):
        with _caller(ctx, request) as user:
            return pd.DataFrame(admin.list_users(ctx, user))

    def forget(_session: dict, name: str, confirm: str, request: gr.Request):
        with _caller(ctx, request) as user:
            report = admin.forget(ctx, user, name, confirm)
            return report, pd.DataFrame(admin.list_users(ctx, user)), "", ""

    ui.list.click(listed, [session], [ui.table], api_name="admin_users")
    ui.forget.click(forget, [session, ui.name, ui.confirm],
                    [ui.report, ui.table, ui.name, ui.confirm], api_name="admin_forget_user")


def render_admin_tab(ctx: Runtime, session: gr.State, opened: gr.Tab) -> None:
    """Admin console sections; visible to all, usable by admins only (checked server-side).
    `opened`: the console's tab, whose opening fills the dashboard."""
    _wire_dashboard(ctx, session, render_dashboard(), opened)
    _wire_documents(ctx, session, render_documents())
    _wire_training(ctx, session, render_training())
    _wire_adapters(ctx, session, render_adapters())
    _wire_prompts(ctx, session, render_prompts(ctx))
    _wire_export(ctx, session, render_export())
    _wire_users(ctx, session, render_users())
