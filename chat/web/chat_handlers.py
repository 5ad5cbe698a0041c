"""Chat handlers of the web app (plain functions of context and inputs): ask, retry, undo,
clear (a new chat). chat/web/app.py lays them out and wires them."""

import threading
from collections.abc import Iterator

import gradio as gr

from chat.errors import ChatError
from chat.runtime import Runtime
from chat.web.views import (
    aligned_ids,
    check_text_history,
    history_for_model,
    raw_text,
    shown_answer,
    shown_question,
    source_rows,
)


def new_session(user: str | None = None) -> dict:
    """Per-browser-session state (deep-copyable: never the model or the index)."""
    return {"user": user, "conversation_id": None, "message_ids": [], "sources": [],
            "pending_rating": None, "compare": None, "titled": -1}  # -1: no title shown yet


def session_for(ctx: Runtime, session: dict | None, request: gr.Request | None) -> dict:
    """This request's session state, owned by the caller's login. A client can address any
    session by its hash, so state that belongs to someone else is dropped, never used."""
    user = ctx.authorizer.web_user(request)
    if not session or session.get("user") != user:
        return new_session(user)
    return {**new_session(user), **session}


def client_chat(chat_history) -> list[dict]:
    """The chat the browser sent back, text only (see views.check_text_history)."""
    try:
        return check_text_history(chat_history)
    except ChatError as exc:
        raise gr.Error(str(exc)) from None


# ---------------------------------------------------------------------------- chat


def respond(ctx: Runtime, message: str, chat_history: list[dict], session: dict,
            request: gr.Request = None) -> Iterator[tuple]:
    """Stream an answer into the chat; records both turns in the store. The question shows
    and the box empties at once; after that the box is left alone, so the next question can be
    typed (and sent: it is asked when this answer is done) while this one streams. A refused
    question (too long, rate limit...) is a warning and goes back into the box; an empty box
    changes nothing (Enter pressed by accident)."""
    if not (message or "").strip():
        yield gr.skip(), gr.skip(), gr.skip()
        return
    session = session_for(ctx, session, request)
    chat_history = client_chat(chat_history)
    # one id per shown answer, so that like/edit find the right row (None: stopped, unsaved)
    ids = aligned_ids(session["message_ids"], chat_history)
    # every state yielded matches what is shown: the ids of turns a retry or an edit replaced
    # must not outlive them (a stopped answer's slot would point at the old answer)
    session = {**session, "message_ids": ids, "compare": None}  # a new question: no pick
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
                                    shown_answer(answer.text, answer.adapter_version,
                                                 answer.prompt_version,
                                                 sources=answer.sources)]
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
        if answer.cut_off:  # known once the stream has ended
            shown = shown[:-1] + [shown_answer(answer.text, answer.adapter_version,
                                               answer.prompt_version,
                                               cut_at=answer.params["max_new_tokens"],
                                               sources=answer.sources)]
        session = {**session, "message_ids": ids + [answer.message_id],
                   "sources": source_rows(answer.sources)}
        yield gr.skip(), shown, session


def retry(ctx: Runtime, chat_history: list[dict], session: dict, retry_data: gr.RetryData,
          request: gr.Request = None) -> Iterator[tuple]:
    """Ask the last question again (a new answer; the old one stays in the store)."""
    chat_history = client_chat(chat_history)
    question = raw_text(chat_history[retry_data.index]["content"])
    session = session_for(ctx, session, request)
    for shown, state, _ in ask_again(ctx, question, chat_history, retry_data.index, session,
                                      request):
        yield shown, state, gr.skip()  # the question stays in the chat: the box is left alone


def ask_again(ctx: Runtime, question: str, chat_history: list[dict], index: int,
               session: dict, request: gr.Request = None) -> Iterator[tuple]:
    """Ask `question` in place of the chat from `index` on (retry, an edited question). A
    refused one leaves the chat as it was and yields the text for the box, to fix and send."""
    for box, shown, state in respond(ctx, question, chat_history[:index], session, request):
        if isinstance(box, str) and box:  # respond hands a refused question back to the box
            yield chat_history, gr.skip(), box
            return
        yield shown, state, gr.skip()


def undo(ctx: Runtime, chat_history: list[dict], session: dict, undo_data: gr.UndoData,
         request: gr.Request = None) -> tuple:
    """Drop the last exchange from the view (the store keeps it: nothing acknowledged is lost)."""
    chat_history = client_chat(chat_history)
    session = session_for(ctx, session, request)
    kept = chat_history[: undo_data.index]
    session = {**session, "message_ids": aligned_ids(session["message_ids"], kept)}
    return kept, session, raw_text(chat_history[undo_data.index]["content"])


def clear(ctx: Runtime, session: dict, request: gr.Request = None) -> tuple:
    """Start a new conversation."""
    return [], new_session(ctx.authorizer.web_user(request))


def shown_sources(ctx: Runtime, session: dict, request: gr.Request = None) -> list[list]:
    """The last answer's sources, from this login's own session state only."""
    return session_for(ctx, session, request)["sources"]
