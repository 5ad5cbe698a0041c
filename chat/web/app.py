"""The Gradio web app: the chat tab (laid out in chat/web/chat_layout.py) with its events
wired to the handlers in chat/web/chat_handlers.py, feedback_handlers.py and
conversation_handlers.py (plain functions of the runtime and inputs); the admin tab."""

import gradio as gr

from chat.runtime import Runtime
from chat.web.admin_tab import render_admin_tab
from chat.web.chat_handlers import clear, new_session, respond, retry, shown_sources, undo
from chat.web.chat_layout import ChatTab, render_chat_tab
from chat.web.conversation_handlers import (
    delete_conversation,
    my_conversations,
    open_conversation,
    rename_conversation,
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
from chat.web.page import CLOSE_BAR_ON_PHONE
from chat.web.views import mark_stopped
from retrieval.examples import example_questions

# Gradio reads event-data types and gr.Request from a handler's annotations, which
# functools.partial hides: each handler below binds the runtime with a signature of its own.


class _After:
    """What follows an event that changed the chat: the Sources panel and the sidebar's list
    read the new state; with `closing`, the comparison panes are put away."""

    def __init__(self, ctx: Runtime, session: gr.State, ui: ChatTab):
        def _sources(session: dict, request: gr.Request):
            return shown_sources(ctx, session, request)

        def _list(session: dict, request: gr.Request):
            return my_conversations(ctx, session, request)

        self.sources = dict(fn=_sources, inputs=[session], outputs=[ui.sources])
        self.listed = dict(fn=_list, inputs=[session],
                           outputs=[session, ui.bar.conversations, ui.bar.title])
        self.panes = [ui.compare_question, ui.answer_a, ui.answer_b, ui.pick_row]

    def __call__(self, event, closing: bool = False, sources_api: str | bool = False) -> None:
        event.then(**self.sources, api_name=sources_api).then(**self.listed, api_name=False)
        if closing:
            event.then(closed_compare, None, self.panes, api_name=False)


def _wire_chat(ctx: Runtime, session: gr.State, ui: ChatTab, after: _After) -> list:
    """Asking, retry, edit, undo, stop, clear and New chat; returns the streaming events."""
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

    chatbot, box, stop = ui.chatbot, ui.box, ui.stop
    # a question sent while an answer streams is asked once that answer is done
    asked = [trigger(_respond, [box, chatbot, session], [box, chatbot, session, stop],
                     api_name=name, trigger_mode="always_last")
             for trigger, name in ((box.submit, "chat"), (ui.send.click, False))]
    asked.append(chatbot.example_select(_example_text, None, [box], api_name=False).then(
        _respond, [box, chatbot, session], [box, chatbot, session, stop], api_name=False))
    redone = [chatbot.retry(_retry, [chatbot, session], [chatbot, session, box, stop],
                            api_name="retry"),
              chatbot.edit(_edit, [chatbot, session], [chatbot, session, box, stop],
                           api_name="edit")]
    for i, event in enumerate(asked):  # a new question: the comparison panes close
        # the first one's sources step is the API's "sources" (the last answer's sources)
        after(event, closing=True, sources_api="sources" if i == 0 else False)
    for event in redone:
        after(event)
    stop.click(_stopped, [chatbot], [stop, chatbot], cancels=asked + redone, queue=False,
               api_name=False)
    chatbot.undo(_undo, [chatbot, session], [chatbot, session, box], api_name="undo")
    for trigger, name in ((chatbot.clear, "clear"), (ui.bar.new.click, "new_chat")):
        after(trigger(_clear, [session], [chatbot, session], cancels=asked + redone,
                      api_name=name), closing=True)
    for event in (chatbot.undo, chatbot.retry, chatbot.edit):  # the compared answer is gone
        event(closed_compare, None, after.panes, api_name=False)
    return asked + redone


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


def _wire_feedback(ctx: Runtime, session: gr.State, ui: ChatTab, after: _After) -> None:
    def _like(chat_history: list, session: dict, data: gr.LikeData, request: gr.Request):
        return like(ctx, chat_history, session, data, request)

    def _save(reason: str | None, comment: str, session: dict, request: gr.Request):
        return save_reason(ctx, reason, comment, session, request)

    def _compare(chat_history: list, session: dict, request: gr.Request):
        yield from compare(ctx, chat_history, session, request)

    def _picker(label: str):
        def _pick(chat_history: list, session: dict, request: gr.Request):
            return pick(ctx, label, chat_history, session, request)
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
    for label, button in ui.pick_buttons.items():  # a pick takes the answer's place
        after(button.click(_picker(label), [ui.chatbot, session],
                           [session, ui.pick_row, ui.answer_a, ui.answer_b, ui.chatbot],
                           api_name=f"pick_{CHOICES[label]}"))


def _wire_conversations(ctx: Runtime, session: gr.State, app: gr.Blocks, ui: ChatTab,
                        after: _After, streaming: list) -> None:
    """`streaming`: the events that stream an answer, stopped when another conversation
    takes the chat (their last updates would bring the old one back)."""
    def _open(conversation_id, session: dict, request: gr.Request):
        return open_conversation(ctx, conversation_id, session, request)

    def _rename(title: str, session: dict, request: gr.Request):
        return rename_conversation(ctx, title, session, request)

    def _delete(session: dict, request: gr.Request):
        return delete_conversation(ctx, session, request)

    bar = ui.bar
    app.load(**after.listed, api_name="conversations")
    app.load(_examples(ctx), None, [ui.chatbot], api_name=False)
    # .input: a pick by the user, not the list's value set by the server
    after(bar.conversations.input(_open, [bar.conversations, session],
                                  [ui.chatbot, session, ui.sources], js=CLOSE_BAR_ON_PHONE,
                                  cancels=streaming, api_name="open_conversation"),
          closing=True)
    bar.rename.click(_rename, [bar.title, session], [session, bar.conversations, bar.title],
                     api_name="rename_conversation")
    bar.delete.click(_shown(True), None, [bar.confirm_row], api_name=False)
    bar.keep.click(_shown(False), None, [bar.confirm_row], api_name=False)
    deleted = bar.confirm.click(_delete, [session],
                                [ui.chatbot, session, bar.conversations, bar.title],
                                cancels=streaming, api_name="delete_conversation")
    deleted.then(_shown(False), None, [bar.confirm_row], api_name=False)
    after(deleted, closing=True)


def _shown(visible: bool):
    return lambda: gr.update(visible=visible)


def _setup_events(ctx: Runtime, session: gr.State, app: gr.Blocks, ui: ChatTab) -> None:
    after = _After(ctx, session, ui)
    streaming = _wire_chat(ctx, session, ui, after)
    _wire_feedback(ctx, session, ui, after)
    _wire_conversations(ctx, session, app, ui, after, streaming)


def build_app(ctx: Runtime) -> gr.Blocks:
    with gr.Blocks(title="Learning Chat", delete_cache=(3600, 3600)) as app:
        gr.Markdown("## Learning Chat — answers from your documents, improved by your feedback")
        session = gr.State(new_session)
        with gr.Tab("Chat"):
            _setup_events(ctx, session, app, render_chat_tab())
        with gr.Tab("Admin") as admin_tab:
            render_admin_tab(ctx, session, admin_tab)
    app.queue(default_concurrency_limit=4, max_size=ctx.cfg.max_queue)
    return app
