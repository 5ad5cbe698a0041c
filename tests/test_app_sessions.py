"""Whose conversations a session sees: the login decides, never session state."""

from __future__ import annotations

import gradio as gr
import pytest

from chat.web.chat_handlers import (
    my_conversations,
    new_session,
    open_conversation,
)
from chat.web.feedback_handlers import like
from chat.web.views import text_of
from tests import app_support
from tests.app_support import ask, like_event, login

ctx = app_support.ctx  # the shared fixtures, bound here as api_support.live is
accounts_ctx = app_support.accounts_ctx



def test_users_reopen_only_their_own_conversations(accounts_ctx, store):
    ctx, as_alice, as_bob = accounts_ctx, login("alice"), login("bob")
    history, alice = ask(ctx, "alice asks", request=as_alice)
    like(ctx, history, alice, like_event(1, True), as_alice)
    _, bob = ask(ctx, "bob asks", request=as_bob)
    _, picker = my_conversations(ctx, new_session(), as_alice)
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
    _, picker = my_conversations(ctx, new_session())  # another tab: a fresh session
    assert [cid for _, cid in picker["choices"]] == [first_tab["conversation_id"]]
    assert first_tab["user"] == "local"
