"""The Gradio web app: lays out the chat tab and wires its events to the handlers in
chat/web/chat_handlers.py and chat/web/feedback_handlers.py (plain functions of the runtime
and inputs)."""

from dataclasses import dataclass

import gradio as gr

from chat.runtime import Runtime
from chat.web.admin_tab import render_admin_tab
from chat.web.chat_handlers import (
    clear,
    my_conversations,
    new_session,
    open_conversation,
    respond,
    retry,
    shown_sources,
    undo,
)
from chat.web.feedback_handlers import (
    CHOICES,
    closed_compare,
    compare,
    edit,
    like,
    mark_source,
    pick,
    save_reason,
)
from chat.web.views import SCORE_TIP, mark_stopped
from feedback.store import RATING_REASONS
from retrieval.examples import example_questions

WELCOME = ("**Ask about the documents in the knowledge base.** Each answer lists the passages "
           "it drew on; rate answers 👍 / 👎, correct them or compare two, and the assistant "
           "learns from it.")
SOURCES_LABEL = "Sources of the last answer (mark the ones that helped). " + SCORE_TIP


@dataclass
class ChatTab:
    """The chat tab's components that events read or write."""

    conversations: gr.Dropdown
    refresh: gr.Button
    reopen: gr.Button
    chatbot: gr.Chatbot
    box: gr.Textbox
    send: gr.Button
    stop: gr.Button
    compare: gr.Button
    reason_box: gr.Group
    reason: gr.Radio
    comment: gr.Textbox
    save: gr.Button
    compare_question: gr.Markdown
    answer_a: gr.Markdown
    answer_b: gr.Markdown
    pick_row: gr.Row
    pick_buttons: dict[str, gr.Button]
    sources: gr.Dataframe
    source_number: gr.Number
    source_buttons: dict[int, gr.Button]  # +1 helped, -1 not relevant


def _render_chat_tab() -> ChatTab:
    with gr.Row():
        with gr.Column(scale=1, min_width=220):
            convs = gr.Dropdown(label="My conversations", choices=[], elem_id="conversations")
            with gr.Row():
                refresh = gr.Button("Refresh", size="sm")
                reopen = gr.Button("Open", size="sm", elem_id="open-conversation")
        with gr.Column(scale=4):
            chatbot = gr.Chatbot(label="Chat", height=520, sanitize_html=True,
                                 render_markdown=True, buttons=["copy"], editable="all",
                                 elem_id="chatbot", placeholder=WELCOME)
            # 👎's reason picker sits right under the answers, above the question box
            with gr.Group(visible=False, elem_id="reason-box") as reason_box:
                reason = gr.Radio(list(RATING_REASONS), label="What was wrong?",
                                  elem_id="reason")
                comment = gr.Textbox(label="Comment (optional)", max_lines=4)
                save = gr.Button("Save feedback", size="sm", elem_id="save-reason")
            with gr.Row():
                box = gr.Textbox(placeholder="Ask a question…", show_label=False, scale=8,
                                 elem_id="question", max_lines=8)
                send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                stop = gr.Button("Stop", scale=1, elem_id="stop", interactive=False)
                compare_btn = gr.Button("Compare", scale=1, elem_id="compare")
            compare_question = gr.Markdown(elem_id="compare-question")
            with gr.Row():
                answer_a = gr.Markdown(sanitize_html=True, label="A", elem_id="answer-a")
                answer_b = gr.Markdown(sanitize_html=True, label="B", elem_id="answer-b")
            with gr.Row(visible=False, elem_id="pick-row") as pick_row:
                pick_buttons = {c: gr.Button(c, size="sm", elem_id=f"pick-{CHOICES[c]}")
                                for c in CHOICES}
            sources = gr.Dataframe(headers=["#", "source", "relevance", "snippet", "passage"],
                                   datatype=["number", "str", "number", "str", "number"],
                                   value=[], label=SOURCES_LABEL, interactive=False,
                                   wrap=True, elem_id="sources")
            with gr.Row():  # what the retriever learns from (train --method retrieval)
                number = gr.Number(label="Source #", precision=0, minimum=1, value=1, scale=1,
                                   elem_id="source-number")
                marks = {1: gr.Button("Helped", size="sm", elem_id="source-helped"),
                         -1: gr.Button("Not relevant", size="sm", elem_id="source-not-relevant")}
    return ChatTab(convs, refresh, reopen, chatbot, box, send, stop, compare_btn, reason_box,
                   reason, comment, save, compare_question, answer_a, answer_b, pick_row,
                   pick_buttons, sources,
                   number, marks)


# Gradio reads event-data types and gr.Request from a handler's annotations, which
# functools.partial hides: each handler below binds the runtime with a signature of its own.


def _conversation_list(ctx: Runtime):
    def _list(session: dict, request: gr.Request):
        return my_conversations(ctx, session, request)
    return _list


def _wire_chat(ctx: Runtime, session: gr.State, ui: ChatTab) -> None:
    def _respond(message: str, chat_history: list, session: dict, request: gr.Request):
        yield from _stoppable(respond(ctx, message, chat_history, session, request))

    def _retry(chat_history: list, session: dict, data: gr.RetryData, request: gr.Request):
        yield from _stoppable(retry(ctx, chat_history, session, data, request))

    def _edit(chat_history: list, session: dict, data: gr.EditData, request: gr.Request):
        yield from _stoppable(edit(ctx, chat_history, session, data, request))

    def _undo(chat_history: list, session: dict, data: gr.UndoData, request: gr.Request):
        return undo(ctx, chat_history, session, data, request)

    def _clear(session: dict, request: gr.Request):
        return clear(ctx, session, request)

    def _sources(session: dict, request: gr.Request):
        return shown_sources(ctx, session, request)

    chatbot, box = ui.chatbot, ui.box
    after = dict(fn=_sources, inputs=[session], outputs=[ui.sources], api_name="sources")
    # a question sent while an answer streams is asked once that answer is done
    stop = ui.stop
    asked = [trigger(_respond, [box, chatbot, session], [box, chatbot, session, stop],
                     api_name=name, trigger_mode="always_last")
             for trigger, name in ((box.submit, "chat"), (ui.send.click, False))]
    asked.append(chatbot.example_select(_example_text, None, [box], api_name=False).then(
        _respond, [box, chatbot, session], [box, chatbot, session, stop], api_name=False))
    panes = [ui.compare_question, ui.answer_a, ui.answer_b, ui.pick_row]
    for event in asked:
        event.then(**after).then(_conversation_list(ctx), [session],
                                 [session, ui.conversations], api_name=False)
        event.then(closed_compare, None, panes, api_name=False)  # a new question: panes close
    redone = [chatbot.retry(_retry, [chatbot, session], [chatbot, session, box, stop],
                            api_name="retry"),
              chatbot.edit(_edit, [chatbot, session], [chatbot, session, box, stop],
                           api_name="edit")]
    for event in redone:
        event.then(**after)
    stop.click(_stopped, [chatbot], [stop, chatbot], cancels=asked + redone, queue=False,
               api_name=False)
    chatbot.undo(_undo, [chatbot, session], [chatbot, session, box], api_name="undo")
    cleared = chatbot.clear(_clear, [session], [chatbot, session], api_name="clear")
    cleared.then(**after)
    cleared.then(closed_compare, None, panes, api_name=False)


def _example_text(data: gr.SelectData) -> str:
    return data.value["text"]


def _stopped(chat_history: list):
    return gr.Button(interactive=False), mark_stopped(chat_history)


def _stoppable(stream, fields: int = 3):
    """A streaming handler's updates (`fields` outputs each) plus the Stop button, pressable
    while it streams; its last update comes again with Stop off (so that the final output,
    which API clients read, is the handler's)."""
    last = (gr.skip(),) * fields
    for last in stream:
        yield (*last, gr.Button(interactive=True))
    yield (*last, gr.Button(interactive=False))


def _examples(ctx: Runtime):
    def _load():  # the knowledge base of now, not of when the server started
        questions = example_questions(ctx.store, ctx.service.retriever.seed_dir)
        return gr.Chatbot(examples=[{"text": q} for q in questions])
    return _load


def _wire_feedback(ctx: Runtime, session: gr.State, ui: ChatTab) -> None:
    def _like(chat_history: list, session: dict, data: gr.LikeData, request: gr.Request):
        return like(ctx, chat_history, session, data, request)

    def _save(reason: str | None, comment: str, session: dict, request: gr.Request):
        return save_reason(ctx, reason, comment, session, request)

    def _compare(chat_history: list, session: dict, request: gr.Request):
        yield from compare(ctx, chat_history, session, request)

    def _picker(label: str):
        def _pick(session: dict, request: gr.Request):
            return pick(ctx, label, session, request)
        return _pick

    def _marker(value: int):
        def _mark(number, session: dict, request: gr.Request):
            return mark_source(ctx, number, value, session, request)
        return _mark

    ui.chatbot.like(_like, [ui.chatbot, session], [session, ui.reason_box], api_name="like")
    for value, button in ui.source_buttons.items():
        button.click(_marker(value), [ui.source_number, session], [],
                     api_name="source_helped" if value == 1 else "source_not_relevant")
    ui.save.click(_save, [ui.reason, ui.comment, session],
                  [session, ui.reason_box, ui.reason, ui.comment], api_name=False)
    ui.compare.click(_compare, [ui.chatbot, session],
                     [ui.compare_question, ui.answer_a, ui.answer_b, session, ui.pick_row],
                     api_name="compare")
    for label, button in ui.pick_buttons.items():
        button.click(_picker(label), [session],
                     [session, ui.pick_row, ui.answer_a, ui.answer_b],
                     api_name=f"pick_{CHOICES[label]}")


def _wire_conversations(ctx: Runtime, session: gr.State, app: gr.Blocks, ui: ChatTab) -> None:
    def _open(conversation_id, session: dict, request: gr.Request):
        return open_conversation(ctx, conversation_id, session, request)

    listed = _conversation_list(ctx)
    app.load(listed, [session], [session, ui.conversations], api_name=False)
    app.load(_examples(ctx), None, [ui.chatbot], api_name=False)
    ui.refresh.click(listed, [session], [session, ui.conversations], api_name="conversations")
    ui.reopen.click(_open, [ui.conversations, session], [ui.chatbot, session, ui.sources],
                    api_name="open_conversation")


def _setup_events(ctx: Runtime, session: gr.State, app: gr.Blocks, ui: ChatTab) -> None:
    _wire_chat(ctx, session, ui)
    _wire_feedback(ctx, session, ui)
    _wire_conversations(ctx, session, app, ui)


def build_app(ctx: Runtime) -> gr.Blocks:
    with gr.Blocks(title="Learning Chat", delete_cache=(3600, 3600)) as app:
        gr.Markdown("## Learning Chat — answers from your documents, improved by your feedback")
        session = gr.State(new_session)
        with gr.Tab("Chat"):
            _setup_events(ctx, session, app, _render_chat_tab())
        with gr.Tab("Admin") as admin_tab:
            render_admin_tab(ctx, session, admin_tab)
    app.queue(default_concurrency_limit=4, max_size=ctx.cfg.max_queue)
    return app
