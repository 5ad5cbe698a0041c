"""Two answers side by side: compare samples them, pick stores the choice (and a pair)."""

import json
from types import SimpleNamespace

import gradio as gr
import pytest

from chat.web.chat_handlers import new_session
from chat.web.conversation_handlers import open_conversation
from chat.web.feedback_handlers import compare, pick
from chat.web.views import badge, history_from_store, raw_text, shown_answer
from tests import app_support
from tests.app_support import ask

ctx = app_support.ctx  # the shared fixture, bound here as api_support.live is


def test_compare_then_pick_writes_a_comparison_and_a_preference(ctx, store):
    history, session = ask(ctx, "Name a colour.")
    before = store.counts()["messages"]
    *_, (question, a, b, session, row) = compare(ctx, history, session)
    assert row["visible"] is True and store.counts()["messages"] == before  # nothing added
    assert question == "**Two answers to:** Name a colour."
    first, second = session["compare"]["answers"]
    assert first.prompt[-1] == {"role": "user", "content": "Name a colour."}
    # shown as the chat shows an answer (strip_decorations would also eat trailing whitespace)
    version = first.prompt_version
    assert a == "#### A\n\n" + shown_answer(first.text, first.adapter_version,
                                            version)["content"]
    assert b == "#### B\n\n" + shown_answer(second.text, second.adapter_version,
                                            version)["content"]
    session, row, a_now, b_now, _ = pick(ctx, "A", history, session)
    assert a_now.startswith("#### A · your pick ✓\n\n") and b_now.startswith("#### B\n\n")
    (cmp,) = store.query("SELECT * FROM comparisons")
    assert (cmp["choice"], cmp["answer_a"], cmp["user"]) == ("a", first.text, session["user"])
    (pref,) = store.query("SELECT * FROM preferences")
    assert (pref["chosen"], pref["rejected"], pref["source"]) == (
        first.text, second.text, "compare")
    assert session["compare"] is None and row["visible"] is False
    with pytest.raises(gr.Error):
        pick(ctx, "B", history, session)  # one pick per comparison


def test_the_pick_takes_the_answers_place_in_the_chat_and_on_reopen(ctx, store):
    history, session = ask(ctx, "Name a colour.")
    answered = session["message_ids"][-1]
    *_, (_, _, _, session, _) = compare(ctx, history, session)
    chosen = session["compare"]["answers"][1]
    session, *_, shown = pick(ctx, "B", history, session)
    assert len(shown) == 2 and raw_text(shown[1]["content"]).strip() == chosen.text.strip()
    assert "your pick of two" in shown[1]["content"]
    kept = store.message(session["message_ids"][-1])  # later thumbs rate the pick
    assert (kept["content"], kept["parent_id"]) == (chosen.text,
                                                   store.message(answered)["parent_id"])
    assert store.message(answered)["content"]  # the replaced answer stays stored
    update, reopened, _ = open_conversation(ctx, session["conversation_id"], new_session())
    assert update["value"] == shown and reopened["message_ids"] == session["message_ids"]


def test_a_pick_after_undo_replaces_nothing(ctx, store):
    """The compared answer is gone from the chat (undone): the pick is saved as a choice but
    stands in for no other answer."""
    history, session = ask(ctx, "First question?")
    history, session = ask(ctx, "Second question?", history, session)
    *_, (_, _, _, session, _) = compare(ctx, history, session)
    before = store.counts()["messages"]
    session, *_, shown = pick(ctx, "A", history[:2], session)  # Q2 and its answer undone
    assert shown == gr.skip() and store.counts()["messages"] == before
    assert store.counts()["comparisons"] == 1


def test_a_reopened_pick_stands_where_its_answer_was():
    """Rows written in between (another tab) do not move the pick to the end."""
    def row(i, role, text, **params):
        return {"id": i, "role": role, "content": text, "adapter_version": None,
                "prompt_version": 1, "sources_json": "[]", "params_json": json.dumps(params)}
    rows = [row(1, "user", "Q1"), row(2, "assistant", "A1"), row(3, "user", "Q2"),
            row(4, "assistant", "A2"), row(5, "assistant", "P1", replaces=2),
            row(6, "assistant", "P2", replaces=5)]  # compared again: the second pick wins
    history, ids, _ = history_from_store(rows)
    assert [raw_text(m["content"]).strip() for m in history] == ["Q1", "P2", "Q2", "A2"]
    assert ids == [6, 4] and "your pick of two" in history[1]["content"]


def test_a_tie_leaves_the_chat_as_it_was(ctx, store):
    history, session = ask(ctx, "Name a colour.")
    *_, (_, _, _, session, _) = compare(ctx, history, session)
    before = store.counts()["messages"]
    *_, shown = pick(ctx, "Tie", history, session)
    assert shown is gr.skip() or shown == gr.skip()
    assert store.counts()["messages"] == before


def test_compare_tie_and_both_bad_make_no_pair(ctx, store):
    history, session = ask(ctx, "Say something.")
    for choice in ("Tie", "Both bad"):
        *_, (_, _, _, session, _) = compare(ctx, history, session)
        session, *_ = pick(ctx, choice, history, session)
    assert [r["choice"] for r in store.query("SELECT choice FROM comparisons")] == [
        "tie", "both_bad"]
    assert store.counts()["preferences"] == 0


def test_compare_needs_a_question(ctx):
    with pytest.raises(gr.Error):
        list(compare(ctx, [], new_session()))


def test_compare_shows_answers_as_the_chat_does(ctx, monkeypatch):
    """A sample cut inside a code block, or holding HTML, is shown like a chat answer: the
    fence is closed so the version badge stays outside it, and tags are escaped."""
    history, session = ask(ctx, "Show code.")
    replies = iter(["Here:\n```python\nprint(1)", "<b>bold</b> text"])

    def stream(*args, **kwargs):
        yield SimpleNamespace(text=next(replies), adapter_version="v0002", prompt_version=1,
                              prompt=[{"role": "user", "content": "Show code."}])
    monkeypatch.setattr(ctx.service, "stream", stream)
    *_, (_, a, b, session, _) = compare(ctx, history, session)
    assert a == "#### A\n\nHere:\n```python\nprint(1)\n```" + badge("v0002", 1)
    assert b == "#### B\n\n&lt;b>bold&lt;/b> text" + badge("v0002", 1)
    assert session["compare"]["answers"][0].text == "Here:\n```python\nprint(1)"


@pytest.mark.parametrize("texts,calls", [(["Paris.", "Paris.", "Paris!"], 3),
                                         (["Paris."] * 4, 4)])
def test_compare_samples_b_again_while_it_repeats_a(ctx, store, monkeypatch, texts, calls):
    history, session = ask(ctx, "Capital of France?")
    replies = iter(texts)

    def stream(*args, **kwargs):
        yield SimpleNamespace(text=next(replies), adapter_version=None, prompt_version=1,
                              prompt=[{"role": "user", "content": "Capital of France?"}])
    monkeypatch.setattr(ctx.service, "stream", stream)
    *_, (_, _, _, session, _) = compare(ctx, history, session)
    assert next(replies, None) is None and len(texts) == calls
    a, b = (answer.text for answer in session["compare"]["answers"])
    assert (a, b) == (texts[0], texts[-1])
    if a == b:  # still the same after every attempt: only a tie can be recorded
        with pytest.raises(gr.Error, match="same text"):
            pick(ctx, "B", history, session)
        pick(ctx, "Tie", history, session)
        assert store.counts()["comparisons"] == 1 and store.counts()["preferences"] == 0
