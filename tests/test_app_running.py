"""Feedback through the running web app, and the web app held to the API's input limits."""

from __future__ import annotations

import json
from types import SimpleNamespace

import gradio as gr
import httpx
import pytest

from chat.web.app import build_app
from chat.web.chat_handlers import respond
from chat.web.feedback_handlers import compare, edit, like, pick, save_reason
from chat.web.views import raw_text, text_of
from tests import app_support
from tests.app_support import ask, like_event
from tests.wiring_support import wired

# ---------------------------------------------------------------------------- running app

ctx = app_support.ctx  # the shared fixture, bound here as api_support.live is



@pytest.fixture
def running(ctx):
    app = build_app(ctx)
    app.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True)
    yield app
    app.close()


def _event(app, session_hash: str, trigger: str, data: list, event_data: dict) -> list:
    """Send a UI event that carries event data (gradio_client cannot) on the client's session."""
    chatbot = next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == "chatbot")
    fn_index = next(i for i, fn in app.fns.items()
                    if any(t[0] == chatbot._id and t[1] == trigger for t in fn.targets))
    base = app.local_url.rstrip("/") + "/gradio_api/queue"
    with httpx.Client(timeout=60) as http:
        joined = http.post(f"{base}/join", json={
            "data": data, "event_data": event_data, "fn_index": fn_index,
            "trigger_id": chatbot._id, "session_hash": session_hash})
        joined.raise_for_status()
        with http.stream("GET", f"{base}/data", params={"session_hash": session_hash}) as sse:
            for line in sse.iter_lines():
                msg = json.loads(line[5:]) if line.startswith("data:") else {}
                if msg.get("msg") == "process_completed":
                    assert msg["success"], msg
                    return msg["output"]["data"]
    raise AssertionError("no answer from the event")


def test_feedback_through_the_running_app(running, store):
    from gradio_client import Client

    client = Client(running.local_url, verbose=False)
    _, history = client.predict("What is 2+2?", [], api_name="/chat")
    answer_id = store.query("SELECT id FROM messages WHERE role = 'assistant'")[0]["id"]
    _event(running, client.session_hash, "like", [history, None],
           {"index": 1, "value": [history[1]["content"]], "liked": False})
    assert store.query("SELECT message_id, value FROM ratings") == [
        {"message_id": answer_id, "value": -1}]
    _event(running, client.session_hash, "edit", [history, None],
           {"index": 1, "value": "Four.", "previous_value": history[1]["content"]})
    assert store.query("SELECT message_id, content FROM corrections") == [
        {"message_id": answer_id, "content": "Four."}]
    client.predict(history, api_name="/compare")
    client.predict(history, api_name="/pick_b")
    (cmp,) = store.query("SELECT choice, user, preference_id FROM comparisons")
    assert cmp["choice"] == "b" and cmp["preference_id"] is not None
    user = store.query("SELECT user FROM conversations")[0]["user"]
    assert cmp["user"] == user == "local"  # open mode: the one local operator


def test_real_model_answer_rated_and_compared(cfg, store, real_engine):
    """The real path once: the shipped model answers, is rated, and two samples are compared."""
    ctx = wired(cfg, real_engine, store, max_new_tokens=12)
    history, session = ask(ctx, "What is the capital of France?")
    assert "Paris" in history[1]["content"]
    like(ctx, history, session, like_event(1, True))
    # an open question: two samples of a one-fact answer are often the same words
    history, session = ask(ctx, "Describe the sea in one sentence.", history, session)
    *_, (_, _, _, session, _) = compare(ctx, history, session)
    a, b = session["compare"]["answers"]
    assert a.text != b.text
    session, *_, shown = pick(ctx, "B", history, session)
    assert store.counts()["ratings"] == 1 and store.counts()["preferences"] == 1
    assert raw_text(shown[-1]["content"]).strip() == b.text.strip()  # the pick, in the chat


def test_reopen_through_the_running_app(running, store):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(running.local_url, verbose=False)
    client.predict("Remember me?", [], api_name="/chat")
    conv = store.query("SELECT id FROM conversations")[0]["id"]
    other = store.create_conversation("someone-else", "private")
    picker, _ = client.predict(api_name="/conversations")
    assert [c[1] for c in picker["choices"]] == [conv] and picker["value"] == conv  # marked
    update, sources = client.predict(conv, api_name="/open_conversation")
    history = update["value"]
    assert text_of(history[0]["content"]) == "Remember me?" and len(history) == 2
    assert update["feedback_value"] == [None]  # not rated yet
    assert sources["headers"] == ["#", "source", "relevance", "snippet", "passage"]
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict(other, api_name="/open_conversation")


def test_unpaired_surrogates_are_a_clear_error_and_write_nothing(ctx, store):
    before = store.counts()
    with pytest.warns(UserWarning, match="not valid Unicode"):
        ask(ctx, "Capital \ud800?")
    assert store.counts() == before
    history, session = ask(ctx, "Capital of France?")
    before = store.counts()
    data = SimpleNamespace(index=1, previous_value=history[1]["content"],
                           value=[{"type": "text", "text": "Paris \udc00."}])
    with pytest.raises(gr.Error, match="not valid Unicode"):
        list(edit(ctx, history, session, data))
    assert store.counts() == before


@pytest.mark.parametrize("turn,error", [
    ({"role": "user", "content": "x" * 4001}, "too long"),
    ({"role": "assistant", "content": "x" * 16001}, "too long"),
    ({"role": "user", "content": "Capital \ud800?"}, "not valid Unicode"),
])
def test_history_from_the_browser_is_held_to_the_api_limits(ctx, store, turn, error):
    """The chat history comes from the browser: each turn is checked as the API checks it,
    on asking and on comparing, and a refused one writes nothing."""
    history, session = ask(ctx, "first?")
    history = [turn, *history]
    before = store.counts()
    with pytest.warns(UserWarning, match=error):  # a toast in the browser
        updates = list(respond(ctx, "second?", history, session))
    assert updates[-1] == ("second?", history, gr.skip())
    with pytest.warns(UserWarning, match=error):
        updates = list(compare(ctx, history, session))
    assert updates[-1] == (gr.skip(),) * 4 + (gr.update(visible=False),)
    assert store.counts() == before


def test_web_corrections_and_comments_are_held_to_the_api_limits(ctx, store):
    history, session = ask(ctx, "Capital of France?")
    limit = ctx.cfg.max_message_chars
    before = store.counts()
    data = SimpleNamespace(index=1, previous_value=history[1]["content"],
                           value="Paris " * (4 * limit // 6 + 1))
    with pytest.raises(gr.Error, match="the correction is too long"):
        list(edit(ctx, history, session, data))
    session, _ = like(ctx, history, session, like_event(1, False))
    with pytest.raises(gr.Error, match="the comment is too long"):
        save_reason(ctx, "too long", "y" * (limit + 1), session)
    assert store.query("SELECT reason, comment FROM ratings") == [
        {"reason": None, "comment": None}]
    assert (store.counts()["corrections"], store.counts()["preferences"]) == (
        before["corrections"], before["preferences"])


def test_gradio_deletes_old_uploads_and_downloads(ctx):
    """Every logged-in user can upload through Gradio: its temporary files are cleaned."""
    frequency, age = build_app(ctx).delete_cache
    assert 0 < frequency <= age <= 24 * 3600
