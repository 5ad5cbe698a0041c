"""The admin tab's layout: one render function per section, each returning the components
its events read or write (chat/web/admin_tab.py wires them)."""

import json
from dataclasses import dataclass

import gradio as gr

from chat.runtime import Runtime
from chat.web.admin_views import (
    ADAPTER_COLUMNS,
    PROMPT_COLUMNS,
    RECENT_COLUMNS,
    empty_table,
    progress_html,
)
from chat.web.plots import run_figures
from chat.web.uploads import ALLOWED_UPLOADS
from feedback.store import RATING_REASONS
from training.config import METHODS

KINDS = ["all", "rating", "correction", "preference"]
REASONS = ["", *RATING_REASONS]  # "": every reason
EXPORT_FORMATS = ["dpo", "kto", "raw"]


@dataclass
class Dashboard:
    kind: gr.Dropdown
    reason: gr.Dropdown
    refresh: gr.Button
    stats: gr.Markdown
    trend: gr.Plot
    recent: gr.Dataframe


def render_dashboard() -> Dashboard:
    with gr.Tab("Dashboard"):
        with gr.Row():
            kind = gr.Dropdown(KINDS, value="all", label="kind")
            reason = gr.Dropdown(REASONS, value="", label="reason")
            refresh = gr.Button("Refresh", elem_id="admin-refresh")
        return Dashboard(kind, reason, refresh, gr.Markdown(elem_id="feedback-stats"),
                         gr.Plot(show_label=False, format="png", elem_id="thumbs-down-plot"),
                         gr.Dataframe(empty_table(RECENT_COLUMNS), label="Recent feedback",
                                      wrap=True))


@dataclass
class Documents:
    files: gr.File
    upload: gr.Button
    list: gr.Button
    doc_id: gr.Number
    delete: gr.Button
    report: gr.JSON
    table: gr.Dataframe
    tab: gr.Tab  # its opening lists the documents


def render_documents() -> Documents:
    with gr.Tab("Documents") as tab:
        files = gr.File(file_count="multiple", label="Upload .txt .md .html .pdf",
                        file_types=sorted(ALLOWED_UPLOADS))
        with gr.Row():
            upload = gr.Button("Ingest uploads", variant="primary")
            listed = gr.Button("List documents")
            doc_id = gr.Number(label="document id", precision=0, minimum=1, maximum=2**53)
            delete = gr.Button("Delete document", variant="stop")
        return Documents(files, upload, listed, doc_id, delete, gr.JSON(label="Ingest report"),
                         gr.Dataframe(empty_table(["id", "path"]), label="Documents"), tab)


@dataclass
class Training:
    method: gr.Dropdown
    activate: gr.Checkbox
    start: gr.Button
    cancel: gr.Button
    view: list  # progress bar, loss curve, reward curve, the gate's verdict
    timer: gr.Timer
    seen: gr.State  # the latest run's id and status when this page last looked


def render_training() -> Training:
    with gr.Tab("Training"):
        with gr.Row():
            method = gr.Dropdown(list(METHODS), value="auto", label="method",
                                 elem_id="train-method")
            activate = gr.Checkbox(True, label="activate if the gate passes")
            start = gr.Button("Start training", variant="primary", elem_id="train-start")
            cancel = gr.Button("Cancel", variant="stop")
        progress = gr.HTML(progress_html(None))
        with gr.Row():
            loss, reward = (gr.Plot(figure, show_label=False, format="png", elem_id=name)
                            for figure, name in zip(run_figures(None),
                                                    ("loss-plot", "reward-plot"), strict=True))
        view = [progress, loss, reward, gr.Markdown(elem_id="gate-verdict")]
        return Training(method, activate, start, cancel, view, gr.Timer(2.0), gr.State(None))


@dataclass
class Adapters:
    version: gr.Textbox
    list: gr.Button
    activate: gr.Button
    rollback: gr.Button
    base: gr.Button
    compare: gr.Button
    table: gr.Dataframe
    side_by_side: gr.HTML
    tab: gr.Tab  # its opening lists the adapters


def render_adapters() -> Adapters:
    with gr.Tab("Adapters") as tab:
        with gr.Row():
            version = gr.Textbox(label="version (e.g. v0002)")
            buttons = [gr.Button("List", elem_id="adapters-list"),
                       gr.Button("Activate", variant="primary"),
                       gr.Button("Roll back"), gr.Button("Serve the base model"),
                       gr.Button("Side by side with active")]
        return Adapters(version, *buttons, gr.Dataframe(empty_table(ADAPTER_COLUMNS),
                                                        label="Adapters",
                                                        elem_id="adapters-table"),
                        gr.HTML(elem_id="adapters-side-by-side"), tab)


@dataclass
class Prompts:
    profile: gr.Code
    version: gr.Number
    list: gr.Button
    add: gr.Button
    activate: gr.Button
    preview: gr.Button
    table: gr.Dataframe
    previewed: gr.HTML
    confirm_row: gr.Column  # Activate asks first: it changes every user's next answer
    confirm_text: gr.Markdown
    confirm: gr.Button
    keep: gr.Button
    tab: gr.Tab  # its opening lists the profiles


def render_prompts(ctx: Runtime) -> Prompts:
    with gr.Tab("Prompts") as tab:
        profile = gr.Code(language="json", label="new profile (JSON)", value=json.dumps(
            {"system_prompt": ctx.cfg.system_prompt, "few_shot": [], "note": ""}, indent=2))
        with gr.Row():
            version = gr.Number(label="profile version", precision=0, minimum=1, maximum=2**53,
                                elem_id="prompt-version")
            buttons = [gr.Button(label, elem_id=f"prompt-{label.split()[0].lower()}")
                       for label in ("List", "Add", "Activate", "Preview vs active")]
        with gr.Column(visible=False, elem_id="confirm-activate-prompt") as confirm_row:
            text = gr.Markdown()
            with gr.Row():
                confirm = gr.Button("Activate it", variant="primary", elem_id="prompt-confirm")
                keep = gr.Button("Cancel", elem_id="prompt-keep")
        return Prompts(profile, version, *buttons,
                       gr.Dataframe(empty_table(PROMPT_COLUMNS), label="Prompt profiles",
                                    wrap=True, elem_id="prompts-table"),
                       gr.HTML(elem_id="prompt-side-by-side"), confirm_row, text, confirm, keep,
                       tab)


@dataclass
class Export:
    format: gr.Dropdown
    go: gr.Button
    file: gr.File


def render_export() -> Export:
    with gr.Tab("Export"):
        return Export(gr.Dropdown(EXPORT_FORMATS, value="dpo", label="format"),
                      gr.Button("Export JSONL"), gr.File(label="download"))


@dataclass
class Users:
    list: gr.Button
    name: gr.Textbox
    confirm: gr.Textbox
    forget: gr.Button
    report: gr.JSON
    table: gr.Dataframe


def render_users() -> Users:
    with gr.Tab("Users"):
        gr.Markdown("**Forget a user** deletes their account, keys, conversations and "
                    "feedback, and retires every adapter their feedback trained. It cannot be "
                    "undone.")
        with gr.Row():
            listed = gr.Button("List users")
            name = gr.Textbox(label="user to forget", elem_id="forget-name")
            confirm = gr.Textbox(label="the same name again, to confirm",
                                 elem_id="forget-confirm")
            forget = gr.Button("Forget user", variant="stop", elem_id="forget-user")
        return Users(listed, name, confirm, forget, gr.JSON(label="What was forgotten"),
                     gr.Dataframe(label="Users"))
