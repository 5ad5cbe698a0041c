"""What the chat page runs besides Gradio's own code; chat/server.py hands both to Gradio."""

import json

from chat.web.views import BADGE_PATTERN

# Gradio fills an answer's edit box with the message as sent, so the version badge's HTML came
# along. The box's value is bound to the edit (an "input" event updates it), so what is sent
# back is the text without it; the server strips it again (views.raw_text) all the same.
PAGE_JS = """() => {
  const badge = new RegExp(BADGE, "g");
  const clean = (box) => {
    const text = box.value.replace(badge, "");
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
}""".replace("BADGE", json.dumps(BADGE_PATTERN), 1)

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
"""
