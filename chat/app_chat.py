"""Chat handlers of the web app (plain functions of context and inputs): ask, retry, undo,
clear, and this user's past conversations. chat/app.py lays them out and wires them."""

import secrets
import threading
from collections.abc import Iterator

import gradio as gr

from chat.errors import ChatError
from chat.service import ServiceContext
from chat.views import (
    aligned_ids,
    conversation_choices,
    history_for_model,
    history_from_store,
    raw_text,
    shown_answer,
    shown_question,
    source_rows,
)


class AppContext(ServiceContext):
    """Everything handlers need; shared by all sessions (model and index are loaded once)."""


def new_session(username: str | None = None) -> dict:
    """Per-browser-session state (deep-copyable: never the model or the index)."""
    return {"user": username or f"guest-{secrets.token_hex(4)}", "conversation_id": None,
            "message_ids": [], "sources": [], "pending_rating": None, "compare": None}


def session_user(session: dict, request: gr.Request | None) -> dict:
    """The session, re-keyed to the login name once the request carries one."""
    if session is None:
        session = new_session()
    session = {**new_session(session.get("user")), **session}
    name = getattr(request, "username", None) if request is not None else None
    if name and session["user"] != name:
        session = new_session(name)
    return session


# ---------------------------------------------------------------------------- chat


def respond(ctx: AppContext, message: str, chat_history: list[dict], session: dict,
            request: gr.Request = None) -> Iterator[tuple]:
    """Stream an answer into the chat; records both turns in the store. The question shows
    and the box empties at once; after that the box is left alone, so the next question can be
    typed (and sent: it is asked when this answer is done) while this one streams. A refused
    question (too long, rate limit...) is a warning and goes back into the box; an empty box
    changes nothing (Enter pressed by accident)."""
    if not (message or "").strip():
        yield gr.skip(), gr.skip(), gr.skip()
        return
    session = session_user(session, request)
    chat_history = list(chat_history or [])
    # one id per shown answer, so that like/edit find the right row (None: stopped, unsaved)
    ids = aligned_ids(session["message_ids"], chat_history)
    # every state yielded matches what is shown: the ids of turns a retry or an edit replaced
    # must not outlive them (a stopped answer's slot would point at the old answer)
    session = {**session, "message_ids": ids}
    message = message.strip()  # as it is stored, and measured when it comes back as history
    shown = chat_history + [shown_question(message)]
    yield "", shown, gr.skip()
    cancel = threading.Event()
    try:
        stream = ctx.service.stream(
            message, session["user"], history=history_for_model(chat_history),
            conversation_id=session["conversation_id"], cancel=cancel)
        answer = None
        for answer in stream:
            session["conversation_id"] = answer.conversation_id
            shown = chat_history + [shown_question(message),
                                    shown_answer(answer.text, answer.adapter_version)]
            yield gr.skip(), shown, session
    except GeneratorExit:  # Stop: the partial answer is recorded, marked as stopped
        cancel.set()
        stream.close()
        raise
    except ChatError as exc:
        # a toast, not gr.Error: that would cover the chat and the box with an "Error" badge;
        # both go back as they were, so the text can be fixed and sent again
        gr.Warning(str(exc))
        yield message, chat_history, gr.skip()
        return
    if answer is not None and answer.message_id is not None:
        session = {**session, "message_ids": ids + [answer.message_id],
                   "sources": source_rows(answer.sources)}
        yield gr.skip(), shown, session


def retry(ctx: AppContext, chat_history: list[dict], session: dict, retry_data: gr.RetryData,
          request: gr.Request = None) -> Iterator[tuple]:
    """Ask the last question again (a new answer; the old one stays in the store)."""
    chat_history = list(chat_history or [])
    question = raw_text(chat_history[retry_data.index]["content"])
    session = session_user(session, request)
    for shown, state, _ in ask_again(ctx, question, chat_history, retry_data.index, session,
                                      request):
        yield shown, state, gr.skip()  # the question stays in the chat: the box is left alone


def ask_again(ctx: AppContext, question: str, chat_history: list[dict], index: int,
               session: dict, request: gr.Request = None) -> Iterator[tuple]:
    """Ask `question` in place of the chat from `index` on (retry, an edited question). A
    refused one leaves the chat as it was and yields the text for the box, to fix and send."""
    for box, shown, state in respond(ctx, question, chat_history[:index], session, request):
        if isinstance(box, str) and box:  # respond hands a refused question back to the box
            yield chat_history, gr.skip(), box
            return
        yield shown, state, gr.skip()


def undo(chat_history: list[dict], session: dict, undo_data: gr.UndoData) -> tuple:
    """Drop the last exchange from the view (the store keeps it: nothing acknowledged is lost)."""
    kept = list(chat_history or [])[: undo_data.index]
    session = {**session, "message_ids": aligned_ids(session["message_ids"], kept)}
    return kept, session, raw_text(chat_history[undo_data.index]["content"])


def clear(session: dict) -> tuple:
    """Start a new conversation."""
    return [], {**session, "conversation_id": None, "message_ids": [], "sources": [],
                "compare": None}


# ---------------------------------------------------------------------------- conversations


def my_conversations(ctx: AppContext, session: dict, request: gr.Request = None) -> tuple:
    """This user's past conversations (never anyone else's) for the picker."""
    session = session_user(session, request)
    choices = conversation_choices(ctx.store.conversations(session["user"]))
    return session, gr.update(choices=choices, value=None)


def open_conversation(ctx: AppContext, conversation_id, session: dict,
                      request: gr.Request = None) -> tuple:
    """Reopen one of this user's conversations: the chat continues where it stopped."""
    session = session_user(session, request)
    if conversation_id in (None, ""):
        raise gr.Error("Pick a conversation first.")
    try:
        ctx.store.conversation(int(conversation_id), session["user"])
    except (ChatError, ValueError):
        raise gr.Error("No such conversation.") from None
    history, ids, sources = history_from_store(ctx.store.messages(int(conversation_id)))
    rated = {r["message_id"]: r["value"] for r in ctx.store.query(
        "SELECT message_id, value FROM ratings WHERE user = ?", (session["user"],))}
    feedback = [{1: "Like", -1: "Dislike"}.get(rated.get(i)) for i in ids]
    session = {**session, "conversation_id": int(conversation_id), "message_ids": ids,
               "sources": sources, "compare": None, "pending_rating": None}
    return gr.update(value=history, feedback_value=feedback), session, sources


def shown_sources(session: dict) -> list[list]:
    return (session or {}).get("sources") or []
