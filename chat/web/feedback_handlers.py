"""Feedback handlers of the web app: thumbs with a reason, corrections by editing an answer,
and two answers side by side to pick from. Each finds the stored answer a shown turn is."""

import json
import secrets
from collections.abc import Iterator
from dataclasses import replace

import gradio as gr

from chat.errors import ChatError
from chat.runtime import Runtime
from chat.web.chat_handlers import ask_again, client_chat, session_for
from chat.web.views import (
    aligned_ids,
    answer_ordinal,
    compare_pane,
    compare_question,
    history_for_model,
    raw_text,
    shown_answer,
    source_rows,
    strip_decorations,
    text_of,
)
from feedback.store import RATING_REASONS, same_answer

COMPARE_ATTEMPTS = 3  # samples of B at most, while it repeats A word for word
COMPARE_TEMPERATURE = 0.8  # two samples of the same prompt; later: two adapter versions
CHOICES = {"A": "a", "B": "b", "Tie": "tie", "Both bad": "both_bad"}


def _answer_id(ctx: Runtime, chat_history: list[dict], session: dict, index) -> int:
    ordinal = answer_ordinal(list(chat_history or []), index)
    if ordinal is None:
        raise gr.Error("Only the assistant's answers can be rated or corrected.")
    ids = aligned_ids(session.get("message_ids", []), chat_history)
    if ids[ordinal] is not None:
        return ids[ordinal]
    position = index[0] if isinstance(index, (list, tuple)) else index
    found = _stopped_answer_id(ctx, session, text_of(chat_history[position]["content"]),
                               claimed={i for i in ids if i is not None})
    if found is None:
        raise gr.Error("This answer was not saved (it failed), so it cannot be rated or corrected.")
    return found


def _stopped_answer_id(ctx: Runtime, session: dict, shown: str,
                       claimed: set[int]) -> int | None:
    """The stored id of a stopped answer shown as `shown`. Its stream ends before it can hand
    its id to the session, and may take one more piece after the browser's last update, so
    the stored text can run on past what is shown. Of the stopped answers not `claimed` by
    another turn that start with it, the closest (exact first; then the latest) wins."""
    if session.get("conversation_id") is None:
        return None
    shown_body, best = _answer_body(shown), None
    for m in ctx.store.messages(session["conversation_id"]):
        if m["role"] != "assistant" or m["id"] in claimed \
                or not json.loads(m["params_json"] or "{}").get("stopped"):
            continue
        stored_body = _answer_body(shown_answer(m["content"], m["adapter_version"])["content"])
        if stored_body.startswith(shown_body) and (
                best is None or len(stored_body) <= best[0]):
            best = (len(stored_body), m["id"])
    return None if best is None else best[1]


def _answer_body(shown: str) -> str:
    """An answer as displayed, less the badge and the fence closed for display only."""
    body = strip_decorations(text_of(shown))
    return body.removesuffix("\n```") if body.count("```") % 2 == 0 else body


def like(ctx: Runtime, chat_history: list[dict], session: dict, like_data: gr.LikeData,
         request: gr.Request = None) -> tuple:
    """👍 saves +1; 👎 saves -1 at once and opens the reason picker (saving it replaces it)."""
    chat_history = client_chat(chat_history)
    session = session_for(ctx, session, request)
    if like_data.liked not in (True, False):
        gr.Info("Your earlier rating stays recorded; pick 👍 or 👎 to change it.")
        return session, gr.update()
    message_id = _answer_id(ctx, chat_history, session, like_data.index)
    value = 1 if like_data.liked else -1
    try:
        ctx.service.rate(message_id, session["user"], value)
    except ChatError as exc:
        raise gr.Error(str(exc)) from None
    session = {**session, "pending_rating": None if value == 1 else message_id}
    return session, gr.update(visible=value == -1)


def mark_source(ctx: Runtime, number, value: int, session: dict,
                request: gr.Request = None) -> None:
    """"Helped" / "not relevant" on source #number of the last answer (the Sources panel)."""
    session = session_for(ctx, session, request)
    rows = session.get("sources") or []
    saved = [i for i in session.get("message_ids", []) if i is not None]
    if not rows or not saved:
        raise gr.Error("Ask a question first: its sources are listed here.")
    if not isinstance(number, int | float) or not 1 <= number <= len(rows) \
            or number != int(number):
        raise gr.Error(f"Pick a source number from 1 to {len(rows)}.")
    try:
        ctx.service.mark_source(saved[-1], session["user"], rows[int(number) - 1][4], value)
    except ChatError as exc:
        raise gr.Error(str(exc)) from None
    gr.Info(f"Thanks: source {int(number)} marked {'helped' if value == 1 else 'not relevant'}.")


def save_reason(ctx: Runtime, reason: str | None, comment: str, session: dict,
                request: gr.Request = None) -> tuple:
    """Store why an answer got a thumbs down (replaces the bare -1)."""
    session = session_for(ctx, session, request)
    message_id = session.get("pending_rating")
    if message_id is None:
        raise gr.Error("Give an answer a thumbs down first.")
    if reason not in RATING_REASONS:
        raise gr.Error("Pick a reason.")
    try:
        ctx.service.rate(message_id, session["user"], -1, reason,
                         (comment or "").strip() or None)
    except ChatError as exc:
        raise gr.Error(str(exc)) from None
    gr.Info("Thanks: feedback saved.")
    return {**session, "pending_rating": None}, gr.update(visible=False), None, ""


def edit(ctx: Runtime, chat_history: list[dict], session: dict, edit_data: gr.EditData,
         request: gr.Request = None) -> Iterator[tuple]:
    """An edited answer is stored as a correction; an edited question is asked again."""
    chat_history = client_chat(chat_history)
    session = session_for(ctx, session, request)
    index = edit_data.index[0] if isinstance(edit_data.index, (list, tuple)) else edit_data.index
    new_text = raw_text(edit_data.value).strip()
    if chat_history[index]["role"] == "user":
        yield from ask_again(ctx, new_text, chat_history, index, session, request)
        return
    message_id = _answer_id(ctx, chat_history, session, index)
    try:
        ctx.service.correct(message_id, session["user"], new_text)
    except ChatError as exc:
        raise gr.Error(str(exc)) from None
    answer = ctx.store.message(message_id)
    chat_history[index] = shown_answer(new_text, answer["adapter_version"],
                                       answer["prompt_version"], corrected=True)
    gr.Info("Thanks: your correction was saved.")
    yield chat_history, session, gr.skip()


def compare(ctx: Runtime, chat_history: list[dict], session: dict,
            request: gr.Request = None) -> Iterator[tuple]:
    """Two answers to the last question side by side (two samples; nothing added to the chat)."""
    session = session_for(ctx, session, request)
    history = client_chat(chat_history)
    last_user = max((i for i, m in enumerate(history) if m["role"] == "user"), default=None)
    if last_user is None:
        raise gr.Error("Ask a question first, then compare two answers to it.")
    question = raw_text(history[last_user]["content"])
    heading = compare_question(question)
    texts, answers = ["", ""], []
    try:
        for side in (0, 1):
            # B is sampled again while it says exactly what A said: a pick needs two answers
            for _ in range(COMPARE_ATTEMPTS):
                seed = secrets.randbelow(2**31)
                params = replace(ctx.service.default_params(),
                                 temperature=COMPARE_TEMPERATURE, seed=seed)
                for answer in ctx.service.stream(
                        question, session["user"], history=history_for_model(history[:last_user]),
                        conversation_id=session["conversation_id"], params=params, record=False):
                    texts[side] = compare_pane("AB"[side], shown_answer(
                        answer.text, answer.adapter_version, answer.prompt_version)["content"])
                    yield heading, texts[0], texts[1], session, gr.update(visible=False)
                if not answers or not same_answer(answer.text, answers[0].text):
                    break
            answers.append(answer)
    except ChatError as exc:
        gr.Warning(str(exc))  # a toast: gr.Error would cover both panes with an error badge
        yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.update(visible=False)  # no pick
        return
    a, b = answers
    if same_answer(a.text, b.text):
        gr.Info("Both samples gave the same answer: choose Tie, or ask again.")
    session = {**session, "compare": {"answers": [a, b], "replaces": _last_answer_id(
        ctx, history, session)}}
    yield heading, texts[0], texts[1], session, gr.update(visible=True)


def _last_answer_id(ctx: Runtime, history: list[dict], session: dict) -> int | None:
    """The stored id of the chat's last turn when it is a saved answer, else None."""
    if not history or history[-1]["role"] != "assistant":
        return None
    try:
        return _answer_id(ctx, history, session, len(history) - 1)
    except gr.Error:  # never saved (it failed)
        return None


def closed_compare() -> tuple:
    """The comparison's question, panes and pick buttons put away (a new question, Clear)."""
    return "", "", "", gr.update(visible=False)


def pick(ctx: Runtime, choice: str, chat_history: list[dict], session: dict,
         request: gr.Request = None) -> tuple:
    """Save the side-by-side choice (A, B, Tie, Both bad); A or B also becomes a preference,
    and takes the place of the last answer in the chat (and in the stored conversation)."""
    session = session_for(ctx, session, request)
    compared = session.get("compare") or {}
    pending = compared.get("answers")
    if not pending:
        raise gr.Error("Press Compare first.")
    a, b = pending
    try:
        ctx.service.choose(a.prompt, a.text, b.text, CHOICES.get(choice, choice),
                           session["user"], a.adapter_version, b.adapter_version,
                           a.prompt_version)
    except ChatError as exc:
        raise gr.Error(str(exc)) from None
    gr.Info(f"Thanks: saved your choice ({choice}).")
    panes = [compare_pane(label, shown_answer(answer.text, answer.adapter_version,
                                              answer.prompt_version)["content"],
                          picked=choice in (label, "Tie"))
             for label, answer in (("A", a), ("B", b))]
    session, shown = {**session, "compare": None}, gr.skip()
    if choice in ("A", "B"):
        session, shown = _picked_in_chat(ctx, client_chat(chat_history), session,
                                         pending["AB".index(choice)], compared.get("replaces"))
    return session, gr.update(visible=False), *panes, shown


def _picked_in_chat(ctx: Runtime, history: list[dict], session: dict, chosen,
                    replaced: int | None) -> tuple:
    """The chat and session with `chosen` in the place of the answer that was compared,
    `replaced`; unchanged unless that answer is still the chat's last (an undo or an edit
    since, or an answer never saved, leaves nothing to stand in for)."""
    if replaced is None or _last_answer_id(ctx, history, session) != replaced:
        return session, gr.skip()
    try:
        new_id = ctx.service.keep_pick(replaced, session["user"], chosen)
    except ChatError:
        return session, gr.skip()
    ids = aligned_ids(session.get("message_ids", []), history)
    ids[-1] = new_id
    cut_at = chosen.params.get("max_new_tokens") if chosen.cut_off else None
    history[-1] = shown_answer(chosen.text, chosen.adapter_version, chosen.prompt_version,
                               sources=chosen.sources, picked=True, cut_at=cut_at)
    return {**session, "message_ids": ids, "sources": source_rows(chosen.sources)}, history
