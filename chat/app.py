"""The Gradio web app: handlers are plain functions of (context, inputs); build_app only wires."""

import json
import secrets
import threading
from collections.abc import Iterator

import gradio as gr

from chat.engine import GenParams
from chat.errors import ChatError
from chat.service import ServiceContext
from chat.views import (
    aligned_ids,
    answer_ordinal,
    conversation_choices,
    history_for_model,
    history_from_store,
    raw_text,
    shown_answer,
    shown_question,
    source_rows,
    strip_badge,
    text_of,
)
from feedback.store import RATING_REASONS, same_answer

COMPARE_ATTEMPTS = 3  # samples of B at most, while it repeats A word for word
COMPARE_TEMPERATURE = 0.8  # two samples of the same prompt; later: two adapter versions
CHOICES = {"A": "a", "B": "b", "Tie": "tie", "Both bad": "both_bad"}


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
    for shown, state, _ in _ask_again(ctx, question, chat_history, retry_data.index, session,
                                      request):
        yield shown, state, gr.skip()  # the question stays in the chat: the box is left alone


def _ask_again(ctx: AppContext, question: str, chat_history: list[dict], index: int,
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


# ---------------------------------------------------------------------------- feedback


def _answer_id(ctx: AppContext, chat_history: list[dict], session: dict, index) -> int:
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


def _stopped_answer_id(ctx: AppContext, session: dict, shown: str,
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
    body = strip_badge(text_of(shown))
    return body.removesuffix("\n```") if body.count("```") % 2 == 0 else body


def like(ctx: AppContext, chat_history: list[dict], session: dict,
         like_data: gr.LikeData) -> tuple:
    """👍 saves +1; 👎 saves -1 at once and opens the reason picker (saving it replaces it)."""
    if like_data.liked not in (True, False):
        gr.Info("Your earlier rating stays recorded; pick 👍 or 👎 to change it.")
        return session, gr.update()
    message_id = _answer_id(ctx, chat_history, session, like_data.index)
    value = 1 if like_data.liked else -1
    try:
        ctx.store.record_rating(message_id, session["user"], value)
    except ChatError as exc:
        raise gr.Error(str(exc)) from None
    session = {**session, "pending_rating": None if value == 1 else message_id}
    return session, gr.update(visible=value == -1)


def save_reason(ctx: AppContext, reason: str | None, comment: str, session: dict) -> tuple:
    """Store why an answer got a thumbs down (replaces the bare -1)."""
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


def edit(ctx: AppContext, chat_history: list[dict], session: dict, edit_data: gr.EditData,
         request: gr.Request = None) -> Iterator[tuple]:
    """An edited answer is stored as a correction; an edited question is asked again."""
    chat_history = list(chat_history or [])
    index = edit_data.index[0] if isinstance(edit_data.index, (list, tuple)) else edit_data.index
    new_text = raw_text(edit_data.value).strip()
    if chat_history[index]["role"] == "user":
        yield from _ask_again(ctx, new_text, chat_history, index, session, request)
        return
    message_id = _answer_id(ctx, chat_history, session, index)
    try:
        ctx.service.correct(message_id, session["user"], new_text)
    except ChatError as exc:
        raise gr.Error(str(exc)) from None
    version = ctx.store.message(message_id)["adapter_version"]
    chat_history[index] = shown_answer(new_text, version)
    gr.Info("Thanks: your correction was saved.")
    yield chat_history, session, gr.skip()


def compare(ctx: AppContext, chat_history: list[dict], session: dict,
            request: gr.Request = None) -> Iterator[tuple]:
    """Two answers to the last question side by side (two samples; nothing added to the chat)."""
    session = session_user(session, request)
    history = list(chat_history or [])
    last_user = max((i for i, m in enumerate(history) if m["role"] == "user"), default=None)
    if last_user is None:
        raise gr.Error("Ask a question first, then compare two answers to it.")
    question = raw_text(history[last_user]["content"])
    texts, answers = ["", ""], []
    try:
        for side in (0, 1):
            # B is sampled again while it says exactly what A said: a pick needs two answers
            for _ in range(COMPARE_ATTEMPTS):
                seed = secrets.randbelow(2**31)
                params = GenParams(COMPARE_TEMPERATURE, ctx.cfg.top_p, ctx.cfg.max_new_tokens,
                                   seed)
                for answer in ctx.service.stream(
                        question, session["user"], history=history_for_model(history[:last_user]),
                        conversation_id=session["conversation_id"], params=params, record=False):
                    texts[side] = shown_answer(answer.text, answer.adapter_version)["content"]
                    yield texts[0], texts[1], session, gr.update(visible=False)
                if not answers or not same_answer(answer.text, answers[0].text):
                    break
            answers.append(answer)
    except ChatError as exc:
        gr.Warning(str(exc))  # a toast: gr.Error would cover both panes with an error badge
        yield gr.skip(), gr.skip(), gr.skip(), gr.update(visible=False)  # nothing to pick
        return
    a, b = answers
    if same_answer(a.text, b.text):
        gr.Info("Both samples gave the same answer: choose Tie, or ask again.")
    session = {**session, "compare": {
        "prompt": a.prompt, "a": a.text, "b": b.text, "adapter_a": a.adapter_version,
        "adapter_b": b.adapter_version, "prompt_version": a.prompt_version}}
    yield texts[0], texts[1], session, gr.update(visible=True)


def pick(ctx: AppContext, choice: str, session: dict) -> tuple:
    """Save the side-by-side choice (A, B, Tie, Both bad); A or B also becomes a preference."""
    pending = session.get("compare")
    if not pending:
        raise gr.Error("Press Compare first.")
    try:
        ctx.store.record_comparison(
            pending["prompt"], pending["a"], pending["b"], CHOICES.get(choice, choice),
            session["user"], pending["adapter_a"], pending["adapter_b"],
            pending["prompt_version"])
    except ChatError as exc:
        raise gr.Error(str(exc)) from None
    gr.Info(f"Thanks: saved your choice ({choice}).")
    return {**session, "compare": None}, gr.update(visible=False)


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


# ---------------------------------------------------------------------------- layout


def _render_chat_tab(ctx: AppContext, session: gr.State, app: gr.Blocks) -> None:
    with gr.Row():
        with gr.Column(scale=1, min_width=220):
            convs = gr.Dropdown(label="My conversations", choices=[], elem_id="conversations")
            with gr.Row():
                refresh = gr.Button("Refresh", size="sm")
                reopen = gr.Button("Open", size="sm", elem_id="open-conversation")
        with gr.Column(scale=4):
            chatbot = gr.Chatbot(label="Chat", height=520, sanitize_html=True,
                                 render_markdown=True, buttons=["copy"], editable="all",
                                 elem_id="chatbot")
            with gr.Row():
                box = gr.Textbox(placeholder="Ask a question…", show_label=False, scale=8,
                                 elem_id="question", max_lines=8)
                send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                stop = gr.Button("Stop", scale=1, elem_id="stop")
                compare_btn = gr.Button("Compare", scale=1, elem_id="compare")
            with gr.Group(visible=False, elem_id="reason-box") as reason_box:
                reason = gr.Radio(list(RATING_REASONS), label="What was wrong?",
                                  elem_id="reason")
                comment = gr.Textbox(label="Comment (optional)", max_lines=4)
                save = gr.Button("Save feedback", size="sm", elem_id="save-reason")
            with gr.Row():
                answer_a = gr.Markdown(sanitize_html=True, label="A", elem_id="answer-a")
                answer_b = gr.Markdown(sanitize_html=True, label="B", elem_id="answer-b")
            with gr.Row(visible=False, elem_id="pick-row") as pick_row:
                pick_buttons = {c: gr.Button(c, size="sm", elem_id=f"pick-{CHOICES[c]}")
                                for c in CHOICES}
            sources = gr.Dataframe(headers=["#", "source", "score", "snippet"],
                                   datatype=["number", "str", "number", "str"], value=[],
                                   label="Sources", interactive=False, wrap=True,
                                   elem_id="sources")
    _setup_events(ctx, session, app, locals())  # every component above, by its variable name


def _setup_events(ctx: AppContext, session: gr.State, app: gr.Blocks, ui: dict) -> None:
    chatbot, box, convs = ui["chatbot"], ui["box"], ui["convs"]

    # gradio reads event-data types from annotations, which functools.partial hides
    def _respond(message: str, chat_history: list, session: dict, request: gr.Request):
        yield from respond(ctx, message, chat_history, session, request)

    def _retry(chat_history: list, session: dict, data: gr.RetryData, request: gr.Request):
        yield from retry(ctx, chat_history, session, data, request)

    def _like(chat_history: list, session: dict, data: gr.LikeData):
        return like(ctx, chat_history, session, data)

    def _edit(chat_history: list, session: dict, data: gr.EditData, request: gr.Request):
        yield from edit(ctx, chat_history, session, data, request)

    def _compare(chat_history: list, session: dict, request: gr.Request):
        yield from compare(ctx, chat_history, session, request)

    def _list(session: dict, request: gr.Request):
        return my_conversations(ctx, session, request)

    def _open(conversation_id, session: dict, request: gr.Request):
        return open_conversation(ctx, conversation_id, session, request)

    after = dict(fn=shown_sources, inputs=[session], outputs=[ui["sources"]])
    # a question sent while an answer streams is asked once that answer is done
    events = [trigger(_respond, [box, chatbot, session], [box, chatbot, session],
                      api_name=name, trigger_mode="always_last")
              for trigger, name in ((box.submit, "chat"), (ui["send"].click, False))]
    for event in events:
        event.then(**after).then(_list, [session], [session, convs], api_name=False)
    events += [chatbot.retry(_retry, [chatbot, session], [chatbot, session, box]),
               chatbot.edit(_edit, [chatbot, session], [chatbot, session, box])]
    for event in events[2:]:
        event.then(**after)
    ui["stop"].click(None, cancels=events)
    chatbot.undo(undo, [chatbot, session], [chatbot, session, box])
    chatbot.clear(clear, [session], [chatbot, session]).then(**after)
    chatbot.like(_like, [chatbot, session], [session, ui["reason_box"]])
    def _save(reason: str | None, comment: str, session: dict):
        return save_reason(ctx, reason, comment, session)

    ui["save"].click(_save, [ui["reason"], ui["comment"], session],
                     [session, ui["reason_box"], ui["reason"], ui["comment"]], api_name=False)
    ui["compare_btn"].click(_compare, [chatbot, session],
                            [ui["answer_a"], ui["answer_b"], session, ui["pick_row"]],
                            api_name="compare")
    def _picker(label: str):
        def _pick(session: dict):
            return pick(ctx, label, session)
        return _pick

    for label, button in ui["pick_buttons"].items():
        button.click(_picker(label), [session], [session, ui["pick_row"]],
                     api_name=f"pick_{CHOICES[label]}")
    app.load(_list, [session], [session, convs], api_name=False)
    ui["refresh"].click(_list, [session], [session, convs], api_name="conversations")
    ui["reopen"].click(_open, [convs, session], [chatbot, session, ui["sources"]],
                       api_name="open_conversation")


def build_app(ctx: AppContext) -> gr.Blocks:
    with gr.Blocks(title="Learning Chat", delete_cache=(3600, 3600)) as app:
        gr.Markdown("## Learning Chat — answers from your documents, improved by your feedback")
        session = gr.State(new_session)
        with gr.Tab("Chat"):
            _render_chat_tab(ctx, session, app)
        with gr.Tab("Admin"):
            from chat.admin_ui import render_admin_tab

            render_admin_tab(ctx, session)
    app.queue(default_concurrency_limit=4, max_size=ctx.cfg.max_queue)
    return app
