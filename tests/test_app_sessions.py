"""Whose conversations a session sees: the login decides, never session state."""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
import pytest

from chat.web.chat_handlers import new_session
from chat.web.conversation_handlers import my_conversations, open_conversation
from chat.web.feedback_handlers import edit, like
from chat.web.views import badge, text_of
from tests import app_support
from tests.app_support import ask, like_event, login

ctx = app_support.ctx  # the shared fixtures, bound here as api_support.live is
accounts_ctx = app_support.accounts_ctx



def test_users_reopen_only_their_own_conversations(accounts_ctx, store):
    ctx, as_alice, as_bob = accounts_ctx, login("alice"), login("bob")
    history, alice = ask(ctx, "alice asks", request=as_alice)
    like(ctx, history, alice, like_event(1, True), as_alice)
    _, bob = ask(ctx, "bob asks", request=as_bob)
    _, picker, _ = my_conversations(ctx, new_session(), as_alice)
    assert [cid for _, cid in picker["choices"]] == [alice["conversation_id"]]
    with pytest.raises(gr.Error):
        open_conversation(ctx, bob["conversation_id"], new_session(), as_alice)
    update, session, _ = open_conversation(ctx, alice["conversation_id"], new_session(),
                                           as_alice)
    assert [text_of(m["content"]) for m in update["value"]][0] == "alice asks"
    assert session["message_ids"] == alice["message_ids"]
    assert update["feedback_value"] == ["Like"]
    # the reopened chat continues in the same conversation
    _, session = ask(ctx, "and more", update["value"], session, as_alice)
    assert session["conversation_id"] == alice["conversation_id"]
    assert len(store.messages(alice["conversation_id"])) == 4


def _edited(ctx, history, session, index, text, request):
    data = SimpleNamespace(index=index, value=text, previous_value=history[index]["content"])
    *_, (history, session, _) = edit(ctx, history, session, data, request)
    return history, session


def test_a_reopened_conversation_shows_each_answers_latest_correction(accounts_ctx, store):
    ctx, as_alice = accounts_ctx, login("alice")
    history, alice = ask(ctx, "first?", request=as_alice)
    history, alice = ask(ctx, "second?", history, alice, as_alice)
    like(ctx, history, alice, like_event(1, True), as_alice)
    history, alice = _edited(ctx, history, alice, 1, "A first correction.", as_alice)
    history, alice = _edited(ctx, history, alice, 1, "The latest correction.", as_alice)
    first, second = (store.message(i) for i in alice["message_ids"])
    store.record_correction(second["id"], "bob", "Not alice's words.")  # e.g. an import
    update, session, _ = open_conversation(ctx, alice["conversation_id"], new_session(),
                                           as_alice)
    shown = [text_of(m["content"]) for m in update["value"]]
    assert shown[1] == "The latest correction." + badge(
        first["adapter_version"], first["prompt_version"], corrected=True)
    assert shown[3] == history[3]["content"]  # not corrected by alice: as answered, unmarked
    assert shown[3].endswith(badge(second["adapter_version"], second["prompt_version"],
                                   cut_at=6))  # the tiny model's answers run to the cap
    assert update["feedback_value"] == ["Like", None]  # the thumbs survive too
    assert session["message_ids"] == alice["message_ids"]
    like(ctx, update["value"], session, like_event(1, False), as_alice)  # still its answer
    assert store.query("SELECT message_id, value FROM ratings") == [
        {"message_id": first["id"], "value": -1}]


def test_session_state_of_another_login_is_never_used(accounts_ctx, store):
    """A client can address any session by its hash: bob's request on alice's state neither
    rates alice's answer nor records anything under alice's name."""
    ctx = accounts_ctx
    history, alice = ask(ctx, "alice asks", request=login("alice"))
    with pytest.raises(gr.Error):
        like(ctx, history, alice, like_event(1, False), login("bob"))
    assert store.query("SELECT user FROM ratings") == []
    _, session = ask(ctx, "bob asks", history, alice, login("bob"))
    assert session["user"] == "bob" and session["conversation_id"] != alice["conversation_id"]
    owners = {c["user"] for c in store.query("SELECT user FROM conversations")}
    assert owners == {"alice", "bob"}


def test_open_mode_is_one_stable_identity_across_tabs(ctx):
    """The local operator of open mode finds every conversation from any tab."""
    _, first_tab = ask(ctx, "asked in one tab")
    _, picker, _ = my_conversations(ctx, new_session())  # another tab: a fresh session
    assert [cid for _, cid in picker["choices"]] == [first_tab["conversation_id"]]
    assert first_tab["user"] == "local"
