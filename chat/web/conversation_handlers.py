"""The conversation list's handlers (plain functions of context and inputs): this user's
conversations by latest activity, open one, rename or delete the open one. Only ever the
caller's own: another user's conversation reads as missing."""

import gradio as gr

from chat.errors import ChatError
from chat.runtime import Runtime
from chat.web.chat_handlers import session_for
from chat.web.views import conversation_choices, history_from_store


def my_conversations(ctx: Runtime, session: dict, request: gr.Request = None) -> tuple:
    """The list, with the open conversation marked (selected), and the open one's title for
    the rename box: written only when another conversation is open than the box shows, so a
    title being typed is not overwritten by the refresh after an answer."""
    session = session_for(ctx, session, request)
    rows, current = ctx.store.conversations(session["user"]), session["conversation_id"]
    title = gr.skip()
    if session["titled"] != current:
        title = next((r["title"] or "" for r in rows if r["id"] == current), "")
        session = {**session, "titled": current}
    return session, gr.update(choices=conversation_choices(rows), value=current), title


def open_conversation(ctx: Runtime, conversation_id, session: dict,
                      request: gr.Request = None) -> tuple:
    """Reopen one of this user's conversations: the chat continues where it stopped."""
    session = session_for(ctx, session, request)
    conversation_id, user = _own_id(ctx, conversation_id, session), session["user"]
    history, ids, sources = history_from_store(
        ctx.store.messages(conversation_id), ctx.store.latest_corrections(conversation_id, user))
    rated = ctx.store.ratings_by(user)
    feedback = [{1: "Like", -1: "Dislike"}.get(rated.get(i)) for i in ids]
    session = {**session, "conversation_id": conversation_id, "message_ids": ids,
               "sources": sources, "compare": None, "pending_rating": None}
    return gr.update(value=history, feedback_value=feedback), session, sources


def rename_conversation(ctx: Runtime, title: str, session: dict,
                        request: gr.Request = None) -> tuple:
    """Give the open conversation a title of the user's own."""
    session = session_for(ctx, session, request)
    conversation_id = _own_id(ctx, session["conversation_id"], session)
    try:
        ctx.store.rename_conversation(conversation_id, session["user"], title)
    except ChatError as exc:
        raise gr.Error(str(exc)) from None
    gr.Info("Renamed.")
    session, listed, _ = my_conversations(ctx, session, request)
    return session, listed, ctx.store.conversation(conversation_id)["title"]  # as stored


def delete_conversation(ctx: Runtime, session: dict, request: gr.Request = None) -> tuple:
    """Take the open conversation off the user's list and start a new chat. Its answers and
    the feedback on them stay stored (training may have used them)."""
    session = session_for(ctx, session, request)
    conversation_id = _own_id(ctx, session["conversation_id"], session)
    try:
        ctx.store.hide_conversation(conversation_id, session["user"])
    except ChatError as exc:
        raise gr.Error(str(exc)) from None
    gr.Info("Deleted from your conversations.")
    session = {**session, "conversation_id": None, "message_ids": [], "sources": [],
               "compare": None, "pending_rating": None}
    return [], *my_conversations(ctx, session, request)


def _own_id(ctx: Runtime, conversation_id, session: dict) -> int:
    if conversation_id in (None, ""):
        raise gr.Error("Open a conversation first (or ask a question: it starts one).")
    try:
        ctx.store.conversation(int(conversation_id), session["user"])
    except (ChatError, ValueError, TypeError):
        raise gr.Error("No such conversation.") from None
    return int(conversation_id)
