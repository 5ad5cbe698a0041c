"""The conversation sidebar: the list by latest activity with titles, the open one marked,
rename and delete of one's own conversations only, and a refused change that changes nothing."""

from __future__ import annotations

import gradio as gr
import pytest

from chat.errors import NotFound
from chat.web.chat_handlers import new_session
from chat.web.conversation_handlers import (
    delete_conversation,
    my_conversations,
    open_conversation,
    rename_conversation,
)
from tests import app_support
from tests.app_support import ask, login

ctx = app_support.ctx
accounts_ctx = app_support.accounts_ctx


def _listed(ctx, session, request=None) -> tuple[list[str], object, str]:
    _, picker, title = my_conversations(ctx, session, request)
    return [label for label, _ in picker["choices"]], picker["value"], title


def test_the_list_is_titled_by_first_question_and_ordered_by_latest_activity(ctx, store):
    _, older = ask(ctx, "How do I  roll back\nan adapter?")
    history, newer = ask(ctx, "What does the gate check?")
    assert _listed(ctx, newer) == (["What does the gate check?", "How do I roll back an "
                                    "adapter?"], newer["conversation_id"],
                                   "What does the gate check?")
    # answering in the older conversation brings it to the top; it is the one marked
    update, older, _ = open_conversation(ctx, older["conversation_id"], newer)
    _, older = ask(ctx, "And then?", update["value"], older)
    labels, marked, _ = _listed(ctx, older)
    assert labels[0] == "How do I roll back an adapter?"
    assert marked == older["conversation_id"]
    assert _listed(ctx, new_session("local"))[1:] == (None, "")  # a new chat: none marked


def test_the_rename_box_is_filled_only_when_another_conversation_opens(ctx):
    """The list is refreshed after every answer; a title being typed must survive it."""
    history, session = ask(ctx, "What is a LoRA adapter?")
    session, _, title = my_conversations(ctx, session)
    assert title == "What is a LoRA adapter?"
    _, session = ask(ctx, "And a gate?", history, session)
    assert my_conversations(ctx, session)[2] == gr.skip()  # same conversation: left alone
    _, other = ask(ctx, "Another chat")
    assert my_conversations(ctx, {**session, **other, "titled": session["titled"]})[2] == (
        "Another chat")


def test_feedback_on_a_deleted_conversation_is_refused(ctx, store):
    history, session = ask(ctx, "Rate me later.")
    answer = session["message_ids"][-1]
    ctx.store.hide_conversation(session["conversation_id"], session["user"])
    for act in (lambda: ctx.service.rate(answer, session["user"], 1),
                lambda: ctx.service.correct(answer, session["user"], "Better.")):
        with pytest.raises(NotFound):
            act()
    assert store.counts()["ratings"] == store.counts()["corrections"] == 0


def test_rename_titles_the_open_conversation_and_refuses_a_bad_title(ctx, store):
    _, session = ask(ctx, "What is a LoRA adapter?")
    session, picker, title = rename_conversation(ctx, "  LoRA\tbasics ", session)
    assert title == "LoRA basics" and picker["choices"][0][0] == "LoRA basics"
    for bad in ("   ", "x" * 81):
        with pytest.raises(gr.Error, match="1 to 80 characters"):
            rename_conversation(ctx, bad, session)
    assert store.conversation(session["conversation_id"])["title"] == "LoRA basics"
    with pytest.raises(gr.Error, match="Open a conversation first"):
        rename_conversation(ctx, "no chat open", new_session("local"))


def test_delete_takes_it_off_the_list_and_keeps_its_feedback_rows(ctx, store):
    _, kept = ask(ctx, "Keep me.")
    _, gone = ask(ctx, "Delete me.")
    before = store.counts()
    shown, session, picker, title = delete_conversation(ctx, gone)
    assert shown == [] and session["conversation_id"] is None and title == ""
    assert [cid for _, cid in picker["choices"]] == [kept["conversation_id"]]
    assert store.counts() == before  # nothing erased: the feedback stays with training data
    with pytest.raises(gr.Error, match="No such conversation"):
        open_conversation(ctx, gone["conversation_id"], session)
    with pytest.raises(gr.Error, match="No such conversation"):
        delete_conversation(ctx, gone)  # a second click on a stale page


def test_nobody_renames_or_deletes_another_users_conversation(accounts_ctx, store):
    ctx = accounts_ctx
    _, alice = ask(ctx, "alice's question", request=login("alice"))
    _, bob = ask(ctx, "bob's question", request=login("bob"))
    forged = {**bob, "conversation_id": alice["conversation_id"]}
    with pytest.raises(gr.Error):
        rename_conversation(ctx, "mine now", forged, login("bob"))
    with pytest.raises(gr.Error):
        delete_conversation(ctx, forged, login("bob"))
    with pytest.raises(gr.Error):  # alice's state under bob's login is dropped, not used
        delete_conversation(ctx, alice, login("bob"))
    row = store.conversation(alice["conversation_id"])
    assert (row["title"], row["hidden_at"]) == ("alice's question", None)
    assert _listed(ctx, alice, login("alice"))[0] == ["alice's question"]
