"""What the chat page runs besides Gradio's own code; chat/server.py hands both to Gradio."""

import json

from chat.web.views import DECORATION_PATTERN

# Folds the conversation sidebar away on a phone-sized screen, where it covers the chat; as an
# event's `js` it passes the event's inputs on unchanged.
CLOSE_BAR_ON_PHONE = """(...inputs) => {
  const bar = document.querySelector("#conversation-bar");
  if (bar && bar.classList.contains("open") && window.matchMedia("(max-width: 768px)").matches)
    bar.querySelector(".toggle-button").click();
  return inputs;
}"""

# Gradio fills an answer's edit box with the message as sent, so the badge, the citation marks
# and the sources list came along as HTML. The box's value is bound to the edit (an "input"
# event updates it), so what is sent back is the text without them; the server strips them
# again (views.raw_text) all the same.
PAGE_JS = """() => {
  const added = new RegExp(DECORATION, "g");
  const clean = (box) => {
    const text = box.value.replace(added, "");
    if (text !== box.value) {
      box.value = text;
      box.dispatchEvent(new Event("input", {bubbles: true}));
    }
  };
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType !== Node.ELEMENT_NODE) continue;
        const boxes = node.matches("textarea.edit-textarea") ? [node]
          : node.querySelectorAll("textarea.edit-textarea");
        boxes.forEach(clean);
      }
    }
  }).observe(document.body, {childList: true, subtree: true});
  // Gradio follows a growing chat only while the view is near its bottom; a question sent
  // after scrolling up brings the view down, so its answer is followed as it streams.
  const follow = () => {
    const log = document.querySelector("#chatbot .bubble-wrap");
    if (log) log.scrollTo(0, log.scrollHeight);
  };
  const sent = () => { follow(); setTimeout(follow, 300); };
  document.addEventListener("click", (e) => {
    if (e.target.closest("#send, #chatbot button.example")) sent();
  }, true);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && e.target.closest("#question")) sent();
  }, true);
  // on a phone the open sidebar covers the whole screen: it starts folded away
  const waited = setInterval(() => {
    if (!document.querySelector("#conversation-bar")) return;
    clearInterval(waited);
    (CLOSE_BAR)();
  }, 100);
  setTimeout(() => clearInterval(waited), 15000);
}""".replace("DECORATION", json.dumps(DECORATION_PATTERN), 1).replace(
    "CLOSE_BAR", CLOSE_BAR_ON_PHONE, 1)

# Gradio sizes the edit box from a measure of the message that comes out 0, so the box was
# 160px wide and two lines high: while editing, the bubble takes the widest a bubble can be
# and the box fills it, growing with its text.
PAGE_CSS = """
#chatbot .message-row:has(.edit-textarea),
#chatbot .message-row:has(.edit-textarea) :is(.role, .message) { width: 100%; }
#chatbot .edit-textarea {
  width: 100% !important; min-height: 6em !important; box-sizing: border-box;
  field-sizing: content;
}
#chatbot .answer-sources { font-size: 0.9em; margin-top: 0.5em; overflow-wrap: anywhere; }
#chatbot .answer-sources summary { cursor: pointer; }
#chatbot sup.cite { font-size: 0.75em; }
#chatbot button[aria-label="Like"] { order: 1; }
#chatbot button[aria-label="Dislike"] { order: 2; }
.side-by-side { margin-bottom: 1.5em; }
.side-by-side .panes { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
.side-by-side .answer { white-space: pre-wrap; overflow-wrap: anywhere; }
@media (max-width: 640px) { .side-by-side .panes { grid-template-columns: 1fr; } }
#conversations .wrap { flex-direction: column; flex-wrap: nowrap; gap: 2px; }
#conversations label { width: 100%; box-sizing: border-box; border: none; cursor: pointer; }
#conversations label input { display: none; }
#conversations label.selected { background: var(--color-accent-soft); font-weight: 600; }
"""
