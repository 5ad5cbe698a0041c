"""The chat tab's layout: the conversation sidebar, the chat with its question box, the
comparison panes and the Sources panel (chat/web/app.py wires the events)."""

from dataclasses import dataclass

import gradio as gr

from chat.web.feedback_handlers import CHOICES
from chat.web.views import SCORE_TIP
from feedback.store import RATING_REASONS

WELCOME = ("**Ask about the documents in the knowledge base.** Each answer lists the passages "
           "it drew on; rate answers 👍 / 👎, correct them or compare two, and the assistant "
           "learns from it.")
SOURCES_LABEL = "Sources of the last answer (mark the ones that helped). " + SCORE_TIP
DELETE_NOTE = ("Delete takes this chat off your list. The answers and your feedback on them "
               "stay with the training data; an admin's *Forget user* erases everything.")


@dataclass
class Sidebar:
    """New chat, this user's conversations (latest activity first, the open one selected),
    and rename / delete of the open one (delete asks first)."""

    new: gr.Button
    conversations: gr.Radio
    title: gr.Textbox
    rename: gr.Button
    delete: gr.Button
    confirm_row: gr.Row
    confirm: gr.Button
    keep: gr.Button


def render_sidebar() -> Sidebar:
    with gr.Sidebar(label="Conversations", open=True, width=280, elem_id="conversation-bar"):
        new = gr.Button("+ New chat", size="sm", elem_id="new-chat")
        listed = gr.Radio(choices=[], label="Conversations", elem_id="conversations")
        with gr.Accordion("Rename or delete this chat", open=False, elem_id="manage-chat"):
            title = gr.Textbox(label="Title", max_lines=1, elem_id="conversation-title")
            with gr.Row():
                rename = gr.Button("Rename", size="sm", elem_id="rename-chat")
                delete = gr.Button("Delete", size="sm", variant="stop", elem_id="delete-chat")
            with gr.Column(visible=False, elem_id="confirm-delete") as confirm_row:
                gr.Markdown(DELETE_NOTE)
                with gr.Row():
                    confirm = gr.Button("Delete it", size="sm", variant="stop",
                                        elem_id="confirm-delete-chat")
                    keep = gr.Button("Keep it", size="sm", elem_id="keep-chat")
    return Sidebar(new, listed, title, rename, delete, confirm_row, confirm, keep)


@dataclass
class ChatTab:
    """The chat tab's components that events read or write."""

    bar: Sidebar
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


def render_chat_tab() -> ChatTab:
    bar = render_sidebar()
    # a viewport-relative height: on a phone the question box stays on the first screen
    chatbot = gr.Chatbot(label="Chat", height="62vh", sanitize_html=True,
                         render_markdown=True, buttons=["copy"], editable="all",
                         elem_id="chatbot", placeholder=WELCOME)
    # 👎's reason picker sits right under the answers, above the question box
    with gr.Group(visible=False, elem_id="reason-box") as reason_box:
        reason = gr.Radio(list(RATING_REASONS), label="What was wrong?", elem_id="reason")
        comment = gr.Textbox(label="Comment (optional)", max_lines=4)
        save = gr.Button("Save feedback", size="sm", elem_id="save-reason")
    with gr.Row(equal_height=True):
        box = gr.Textbox(placeholder="Ask a question…", show_label=False, scale=8,
                         elem_id="question", max_lines=8)
        send = gr.Button("Send", variant="primary", scale=1, elem_id="send", min_width=60)
        stop = gr.Button("Stop", scale=1, elem_id="stop", interactive=False, min_width=60)
        compare_btn = gr.Button("Compare", scale=1, elem_id="compare", min_width=80)
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
    return ChatTab(bar, chatbot, box, send, stop, compare_btn, reason_box, reason, comment,
                   save, compare_question, answer_a, answer_b, pick_row, pick_buttons, sources,
                   number, marks)
