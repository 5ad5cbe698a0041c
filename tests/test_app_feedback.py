"""Chat-tab feedback: like/dislike + reason, edit -> correction, stopped answers, my
conversations (compare A/B: tests/test_app_compare.py)."""

import json
from types import SimpleNamespace

import gradio as gr
import pytest

from chat.config import replace
from chat.limits import RateLimiter
from chat.web.chat_handlers import (
    new_session,
    respond,
    retry,
)
from chat.web.feedback_handlers import edit, like, save_reason
from chat.web.views import badge, mark_stopped, strip_decorations, text_of
from tests import app_support
from tests.app_support import ask, like_event
from tests.wiring_support import wired

ctx = app_support.ctx  # the shared fixtures, bound here as api_support.live is
accounts_ctx = app_support.accounts_ctx


def test_answers_carry_a_version_badge_and_aligned_ids(ctx, store):
    history, session = ask(ctx, "first?")
    history, session = ask(ctx, "second?", history, session)
    answers = store.query("SELECT id, content, prompt_version FROM messages "
                          "WHERE role = 'assistant' ORDER BY id")
    assert session["message_ids"] == [a["id"] for a in answers]
    # the tiny random model runs every answer to the 6-token cap, and the badge says so
    assert history[1]["content"].endswith(badge(None, answers[0]["prompt_version"], cut_at=6))
    assert ">answered by the base model" in history[1]["content"]
    assert strip_decorations(history[3]["content"]) == answers[1]["content"]


def test_the_question_shows_at_once_then_the_box_is_left_to_the_typist(ctx):
    """The first update shows the question and empties the box; later ones skip the box, so a
    question typed while the answer streams survives (the browser test sends one)."""
    updates = list(respond(ctx, "Capital of France?", [], new_session()))
    (box, shown, session), *later = updates
    assert (box, session) == ("", gr.skip())
    assert [m["role"] for m in shown] == ["user"] and shown[0]["content"] == "Capital of France?"
    assert len(later) > 1 and all(box == gr.skip() for box, _, _ in later)
    assert [m["role"] for m in later[-1][1]] == ["user", "assistant"]


def test_a_refused_question_goes_back_into_the_box(ctx, store):
    history, session = ask(ctx, "first?")
    before = store.counts()
    too_long = "x" * (ctx.cfg.max_message_chars + 1)
    with pytest.warns(UserWarning, match="too long"):  # a toast in the browser
        updates = list(respond(ctx, too_long, history, session))
    assert updates[-1] == (too_long, history, gr.skip())  # text and chat as they were
    assert store.counts() == before


def test_a_question_at_the_limit_with_a_newline_keeps_the_chat_going(ctx, store):
    """The box's trailing newline is not part of the question: once shown, it comes back as
    history next turn and must be within the limit there too."""
    cfg = replace(ctx.cfg, max_message_chars=60, max_history_turns=2)
    ctx = wired(cfg, ctx.engine, store)
    question = "x" * cfg.max_message_chars + "\n\n"
    history, session = ask(ctx, question)
    assert text_of(history[0]["content"]) == question.strip()
    long_ago = [{"role": "user", "content": "y" * (cfg.max_message_chars + 1)},
                {"role": "assistant", "content": "z"},
                {"role": "user", "content": "ok?"}, {"role": "assistant", "content": "ok"}]
    history, session = ask(ctx, "and then?", long_ago + history, session)
    assert [m["role"] for m in history[-4:]] == ["user", "assistant"] * 2
    assert store.counts()["messages"] == 4  # the too-long turn was past the window: not read


@pytest.mark.parametrize("message", ["", "   \n"])
def test_an_empty_question_changes_nothing(ctx, store, message):
    before = store.counts()
    assert list(respond(ctx, message, [], new_session())) == [(gr.skip(),) * 3]
    assert store.counts() == before


def test_a_stopped_answer_is_stored_as_stopped_and_can_be_rated(ctx, store):
    """Stop closes the stream before it hands over the answer's id: the answer is still
    recorded (marked stopped) and a thumbs down on what is shown finds it."""
    updates = respond(ctx, "Tell me a long story.", [], new_session())
    next(updates)  # the question, shown at once
    _, history, session = next(updates)  # the first words of the answer
    updates.close()  # what gradio does on Stop
    (row,) = store.query("SELECT * FROM messages WHERE role = 'assistant'")
    assert json.loads(row["params_json"])["stopped"] is True
    assert session["message_ids"] == []  # the session never got the id...
    history = mark_stopped(history)  # what the Stop button shows
    assert history[1]["content"].endswith(" · stopped</sub>")
    liked = like(ctx, history, session, like_event(1, False))[0]
    (rating,) = store.query("SELECT * FROM ratings")  # ...yet the rating lands on it
    assert (rating["message_id"], rating["value"]) == (row["id"], -1)
    assert liked["pending_rating"] == row["id"]


def test_a_stopped_answer_is_found_when_the_stream_ran_on_past_the_browser(ctx, store):
    """On Stop, gradio closes the stream after the browser's last update; the stream may
    take one more piece first, so the stored answer runs on past what is shown."""
    updates = respond(ctx, "Tell me a long story.", [], new_session())
    next(updates)
    _, shown_history, _ = next(updates)  # what the browser shows when Stop is pressed
    _, _, session = next(updates)  # one more piece, never shown
    updates.close()
    (row,) = store.query("SELECT * FROM messages WHERE role = 'assistant'")
    shown = strip_decorations(text_of(shown_history[-1]["content"]))
    assert len(shown) < len(row["content"]) and row["content"].startswith(shown)
    like(ctx, shown_history, session, like_event(1, True))
    assert store.query("SELECT message_id, value FROM ratings") == [
        {"message_id": row["id"], "value": 1}]


def _stop_after(updates, n):
    """Chat and session as the browser holds them when Stop is pressed after `n` updates."""
    shown = state = None
    for _ in range(n):
        for output in next(updates):  # (box, chat, session) or (chat, session, box)
            shown = output if isinstance(output, list) else shown
            state = output if isinstance(output, dict) and "message_ids" in output else state
    updates.close()
    return shown, state


@pytest.mark.parametrize("how", ["retry", "edit"])
def test_a_stopped_retry_or_edit_is_rated_not_the_answer_it_replaced(ctx, store, how):
    history, session = ask(ctx, "Tell me a long story.")
    updates = (retry(ctx, history, session, SimpleNamespace(index=0)) if how == "retry" else
               edit(ctx, history, session, SimpleNamespace(index=0, value="Another story.")))
    shown, state = _stop_after(updates, 3)  # the question, then two pieces
    new = store.query("SELECT max(id) AS id FROM messages WHERE role = 'assistant'")[0]["id"]
    like(ctx, shown, state, like_event(1, True))
    assert store.query("SELECT message_id FROM ratings") == [{"message_id": new}]


def test_two_stopped_answers_that_start_alike_are_told_apart(ctx, store):
    first, session = _stop_after(respond(ctx, "Tell me a story.", [], new_session()), 2)
    both, session = _stop_after(respond(ctx, "Tell me a story.", first, session), 5)
    rows = store.query("SELECT id, content FROM messages WHERE role = 'assistant' ORDER BY id")
    assert rows[1]["content"].startswith(rows[0]["content"])  # the same seed, stopped later
    like(ctx, both, session, like_event(1, True))  # the first answer
    like(ctx, both, session, like_event(3, False))  # the second
    assert store.query("SELECT message_id, value FROM ratings ORDER BY message_id") == [
        {"message_id": rows[0]["id"], "value": 1}, {"message_id": rows[1]["id"], "value": -1}]


def test_a_failed_answer_cannot_be_rated(ctx, store):
    history = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "never saved"}]
    with pytest.raises(gr.Error, match="not saved"):
        like(ctx, history, new_session(), like_event(1, True))
    assert store.query("SELECT * FROM ratings") == []


def test_thumbs_up_then_down_with_reason_keeps_one_row(ctx, store):
    history, session = ask(ctx, "Why is the sky blue?")
    session, _ = like(ctx, history, session, like_event(1, True))
    assert store.query("SELECT value FROM ratings") == [{"value": 1}]
    session, panel = like(ctx, history, session, like_event(1, False))
    assert panel["visible"] is True and session["pending_rating"] == session["message_ids"][0]
    assert store.query("SELECT value, reason FROM ratings") == [{"value": -1, "reason": None}]
    session, panel, *_ = save_reason(ctx, "too long", " shorter ", session)
    rows = store.query("SELECT message_id, user, value, reason, comment FROM ratings")
    assert rows == [{"message_id": session["message_ids"][0], "user": session["user"],
                     "value": -1, "reason": "too long", "comment": "shorter"}]
    assert panel["visible"] is False and session["pending_rating"] is None


def test_liking_a_user_message_or_without_reason_is_refused(ctx, store):
    history, session = ask(ctx, "hi")
    with pytest.raises(gr.Error):
        like(ctx, history, session, like_event(0, True))
    with pytest.raises(gr.Error):
        save_reason(ctx, "too long", "", session)  # no thumbs down yet
    _, session = like(ctx, history, session, like_event(1, False))
    with pytest.raises(gr.Error):
        save_reason(ctx, None, "", session)
    assert store.query("SELECT reason FROM ratings") == [{"reason": None}]


def test_rating_targets_the_right_answer_after_an_unsaved_one(ctx, store):
    history, session = ask(ctx, "one?")
    # an answer shown but never saved (stopped): its slot is None, the next one still lines up
    history = history + [{"role": "user", "content": "two?"},
                         {"role": "assistant", "content": "partial"}]
    history, session = ask(ctx, "three?", history, session)
    with pytest.raises(gr.Error):
        like(ctx, history, session, like_event(3, True))
    like(ctx, history, session, like_event(5, True))
    last = store.query("SELECT max(id) AS id FROM messages WHERE role = 'assistant'")[0]["id"]
    assert store.query("SELECT message_id FROM ratings") == [{"message_id": last}]


def test_edit_stores_a_correction_and_a_preference(ctx, store):
    history, session = ask(ctx, "Capital of France?")
    original = store.message(session["message_ids"][0])
    data = SimpleNamespace(index=1, previous_value=history[1]["content"],
                           value=[{"type": "text", "text": "Paris. <sub>adapter: base</sub>"}])
    *_, (history, session, box) = edit(ctx, history, session, data)
    assert box == gr.skip()  # the box may hold a question being typed
    assert store.query("SELECT content FROM corrections") == [{"content": "Paris."}]
    (pref,) = store.query("SELECT * FROM preferences")
    assert (pref["chosen"], pref["rejected"], pref["source"]) == (
        "Paris.", original["content"], "correction")
    assert json.loads(pref["prompt_json"]) == json.loads(original["prompt_json"])
    assert text_of(history[1]["content"]).startswith("Paris.")


def test_an_edit_saves_the_text_only_and_shows_it_marked_corrected(ctx, store):
    """What the browser sends back may still hold the badge (the page script takes it out of
    the box; a client need not run it): the correction never stores it."""
    history, session = ask(ctx, "Capital of France?")
    shown = history[1]["content"]
    mark = shown[shown.index("\n\n<sub"):]
    data = SimpleNamespace(index=1, previous_value=shown, value=f"Paris.{mark} Since 508.")
    *_, (history, session, _) = edit(ctx, history, session, data)
    assert store.query("SELECT content FROM corrections") == [{"content": "Paris. Since 508."}]
    answer = store.message(session["message_ids"][0])
    assert history[1]["content"] == "Paris. Since 508." + badge(
        answer["adapter_version"], answer["prompt_version"], corrected=True)


def test_a_refused_edit_or_retry_leaves_the_chat_as_it_was(ctx, store):
    history, session = ask(ctx, "first?")
    history, session = ask(ctx, "second?", history, session)
    before = store.counts()
    too_long = "y" * (ctx.cfg.max_message_chars + 1)
    with pytest.warns(UserWarning, match="too long"):
        updates = list(edit(ctx, history, session, SimpleNamespace(index=0, value=too_long)))
    assert updates[-1] == (history, gr.skip(), too_long)  # the edit goes to the box to fix
    ctx.service.limiter = RateLimiter(1)
    ctx.service.limiter.check(session["user"])  # the one request a minute is spent
    with pytest.warns(UserWarning, match="too many requests"):
        updates = list(retry(ctx, history, session, SimpleNamespace(index=2)))
    assert updates[-1] == (history, gr.skip(), gr.skip())
    assert store.counts() == before


def test_a_source_of_the_last_answer_is_marked_helped_or_not_relevant(ctx, store, tmp_path):
    from chat.web.feedback_handlers import mark_source

    (tmp_path / "tea.md").write_text("# Tea\n\nBrew green tea at 80 degrees for two minutes.")
    ctx.service.retriever.ingest([tmp_path / "tea.md"])
    with pytest.raises(gr.Error, match="Ask a question first"):
        mark_source(ctx, 1, 1, new_session())
    history, session = ask(ctx, "How hot should green tea be brewed?")
    assert session["sources"] and session["sources"][0][1] == "Tea"
    before = store.counts()
    for number in (0, 2, 1.5, None):
        with pytest.raises(gr.Error, match="source number"):
            mark_source(ctx, number, 1, session)
    assert store.counts() == before
    mark_source(ctx, 1, -1, session)
    mark_source(ctx, 1, 1, session)  # changed her mind: the second mark replaces the first
    marks = store.query("SELECT user, chunk_id, value, message_id FROM source_feedback")
    assert marks == [{"user": session["user"], "chunk_id": session["sources"][0][4],
                      "value": 1, "message_id": session["message_ids"][-1]}]


def test_a_stopped_answer_is_marked_stopped_live_and_on_reopen(ctx, store):
    from chat.web.conversation_handlers import open_conversation

    updates = respond(ctx, "Tell me a long story.", [], new_session())
    next(updates)
    _, history, session = next(updates)
    updates.close()
    shown = mark_stopped(history)
    assert mark_stopped(shown) == shown  # marked once; a finished answer's badge is kept
    assert "stopped" in shown[1]["content"] and "answered by" in shown[1]["content"]
    assert strip_decorations(text_of(shown[1]["content"])) \
        == strip_decorations(text_of(history[1]["content"]))
    reopened = open_conversation(ctx, session["conversation_id"], session, None)[0]["value"]
    assert "stopped" in reopened[1]["content"] and "answered by" in reopened[1]["content"]
