"""The Gradio web app: handlers are plain functions of (context, inputs); build_app only wires."""

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr

from chat.errors import ChatError
from chat.service import ChatService


@dataclass
class AppContext:
    """Everything handlers need; shared by all sessions (model and index are loaded once)."""

    service: ChatService

    @property
    def store(self):
        return self.service.store

    @property
    def cfg(self):
        return self.service.cfg


def new_session(username: str | None = None) -> dict:
    """Per-browser-session state (deep-copyable: never the model or the index)."""
    return {"user": username or f"guest-{secrets.token_hex(4)}", "conversation_id": None,
            "message_ids": []}


def session_user(session: dict, request: gr.Request | None) -> dict:
    if session is None:
        session = new_session()
    name = getattr(request, "username", None) if request is not None else None
    if name and session["user"] != name:
        session = {**new_session(name)}
    return session


def history_for_model(chat_history: list[dict]) -> list[dict]:
    return [{"role": m["role"], "content": _text(m["content"])} for m in chat_history
            if m.get("role") in ("user", "assistant")]


def _text(content) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # gradio 6 may hand back [{"type": "text", "text": ...}]
        return "".join(c.get("text", "") if isinstance(c, dict) else str(c) for c in content)
    return str(content)


# ---------------------------------------------------------------------------- handlers


def respond(ctx: AppContext, message: str, chat_history: list[dict], session: dict,
            request: gr.Request = None) -> Iterator[tuple]:
    """Stream an answer into the chat; records both turns in the store."""
    session = session_user(session, request)
    chat_history = list(chat_history or [])
    try:
        stream = ctx.service.stream(
            message, session["user"], history=history_for_model(chat_history),
            conversation_id=session["conversation_id"])
        answer = None
        for answer in stream:
            session["conversation_id"] = answer.conversation_id
            shown = chat_history + [{"role": "user", "content": message},
                                    {"role": "assistant", "content": answer.text}]
            yield "", shown, session
    except ChatError as exc:
        raise gr.Error(str(exc)) from None
    if answer is not None and answer.message_id is not None:
        session["message_ids"] = session["message_ids"] + [answer.message_id]
        yield "", shown, session


def retry(ctx: AppContext, chat_history: list[dict], session: dict, retry_data: gr.RetryData,
          request: gr.Request = None) -> Iterator[tuple]:
    """Ask the last question again (a new answer; the old one stays in the store)."""
    chat_history = list(chat_history or [])
    question = _text(chat_history[retry_data.index]["content"])
    kept = chat_history[: retry_data.index]
    n_answers = sum(1 for m in kept if m["role"] == "assistant")
    session = {**session_user(session, request)}
    session["message_ids"] = session["message_ids"][:n_answers]
    for _, shown, new_session_state in respond(ctx, question, kept, session, request):
        yield shown, new_session_state


def undo(chat_history: list[dict], session: dict, undo_data: gr.UndoData) -> tuple:
    """Drop the last exchange from the view (the store keeps it: nothing acknowledged is lost)."""
    kept = list(chat_history or [])[: undo_data.index]
    n_answers = sum(1 for m in kept if m["role"] == "assistant")
    session = {**session, "message_ids": session["message_ids"][:n_answers]}
    return kept, session, _text(chat_history[undo_data.index]["content"])


def clear(session: dict) -> tuple:
    """Start a new conversation."""
    return [], {**session, "conversation_id": None, "message_ids": []}


# ---------------------------------------------------------------------------- layout


def _render_chat_tab(ctx: AppContext, session: gr.State) -> None:
    chatbot = gr.Chatbot(label="Chat", height=520, sanitize_html=True, render_markdown=True,
                         buttons=["copy"], elem_id="chatbot")
    with gr.Row():
        box = gr.Textbox(placeholder="Ask a question…", show_label=False, scale=8,
                         elem_id="question", max_lines=8)
        send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
        stop = gr.Button("Stop", scale=1, elem_id="stop")
    outputs = [box, chatbot, session]

    def _respond(message: str, chat_history: list, session: dict, request: gr.Request):
        yield from respond(ctx, message, chat_history, session, request)

    submit_events = [
        trigger(_respond, [box, chatbot, session], outputs, api_name=name)
        for trigger, name in ((box.submit, "chat"), (send.click, False))
    ]
    stop.click(None, cancels=submit_events)

    # gradio reads event-data types from annotations, which functools.partial hides
    def _retry(chat_history: list, session: dict, data: gr.RetryData, request: gr.Request):
        yield from retry(ctx, chat_history, session, data, request)

    chatbot.retry(_retry, [chatbot, session], [chatbot, session])
    chatbot.undo(undo, [chatbot, session], [chatbot, session, box])
    chatbot.clear(clear, [session], [chatbot, session])


def build_app(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title="Learning Chat") as app:
        gr.Markdown("## Learning Chat — answers from your documents, improved by your feedback")
        session = gr.State(new_session)
        with gr.Tab("Chat"):
            _render_chat_tab(ctx, session)
    app.queue(default_concurrency_limit=4, max_size=64)
    return app
