"""The Gradio web app: lays out the chat tab and wires its events to the handlers in
chat/web/chat_handlers.py and chat/web/feedback_handlers.py (plain functions of context and
inputs)."""

import gradio as gr

from chat.web.chat_handlers import (
    AppContext,
    clear,
    my_conversations,
    new_session,
    open_conversation,
    respond,
    retry,
    shown_sources,
    undo,
)
from chat.web.feedback_handlers import CHOICES, compare, edit, like, pick, save_reason
from feedback.store import RATING_REASONS


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

    def _like(chat_history: list, session: dict, data: gr.LikeData, request: gr.Request):
        return like(ctx, chat_history, session, data, request)

    def _undo(chat_history: list, session: dict, data: gr.UndoData, request: gr.Request):
        return undo(ctx, chat_history, session, data, request)

    def _clear(session: dict, request: gr.Request):
        return clear(ctx, session, request)

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
    events += [chatbot.retry(_retry, [chatbot, session], [chatbot, session, box],
                             api_name="retry"),
               chatbot.edit(_edit, [chatbot, session], [chatbot, session, box],
                            api_name="edit")]
    for event in events[2:]:
        event.then(**after)
    ui["stop"].click(None, cancels=events)
    chatbot.undo(_undo, [chatbot, session], [chatbot, session, box], api_name="undo")
    chatbot.clear(_clear, [session], [chatbot, session], api_name="clear").then(**after)
    chatbot.like(_like, [chatbot, session], [session, ui["reason_box"]], api_name="like")
    def _save(reason: str | None, comment: str, session: dict, request: gr.Request):
        return save_reason(ctx, reason, comment, session, request)

    ui["save"].click(_save, [ui["reason"], ui["comment"], session],
                     [session, ui["reason_box"], ui["reason"], ui["comment"]], api_name=False)
    ui["compare_btn"].click(_compare, [chatbot, session],
                            [ui["answer_a"], ui["answer_b"], session, ui["pick_row"]],
                            api_name="compare")
    def _picker(label: str):
        def _pick(session: dict, request: gr.Request):
            return pick(ctx, label, session, request)
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
            from chat.web.admin_tab import render_admin_tab

            render_admin_tab(ctx, session)
    app.queue(default_concurrency_limit=4, max_size=ctx.cfg.max_queue)
    return app
