import json
import shutil
import subprocess

import pytest

from chat.web.page import PAGE_JS
from chat.web.views import (
    DECORATION_PATTERN,
    badge,
    history_from_store,
    raw_text,
    shown_answer,
    shown_question,
    strip_decorations,
)


def test_badge_stays_outside_an_unclosed_code_block():
    shown = shown_answer("Here:\n```python\nprint(1)", "v0002")["content"]
    assert shown.count("```") == 2
    assert shown.rstrip().endswith(">answered by adapter v0002</sub>")
    assert shown.index("<sub") > shown.rindex("```")


def test_display_escaping_round_trips_to_what_was_written():
    question = "Is <b>bold</b> & fine?"
    assert "<b>" not in shown_question(question)["content"]
    assert raw_text(shown_question(question)["content"]) == question
    assert raw_text(shown_answer("1 < 2", "base")["content"]) == "1 < 2"


def test_the_badge_says_what_answered_with_a_tooltip():
    assert badge("v0003", 2).endswith(">answered by adapter v0003 · prompt v2</sub>")
    assert badge(None, 1).endswith(">answered by the base model · prompt v1</sub>")
    assert badge("base").endswith(">answered by the base model</sub>")
    assert badge("v0003", 2, corrected=True).endswith(" · prompt v2 · corrected</sub>")
    assert '<sub title="Written by adapter v0003' in badge("v0003", 2)
    hostile = badge('v1" onmouseover="alert(1)', 2)
    assert hostile.count('"') == 2  # the title's own quotes: a version cannot close it


@pytest.mark.parametrize("shown", [
    "Paris." + badge("v0003", 2),
    "Paris." + badge(None, 1, corrected=True),
    "Paris.\n\n<sub>adapter: base</sub>",  # the older wording, in a chat a browser held
    "Paris." + badge("v0003", 2) + "  \n",
])
def test_an_edited_answer_comes_back_without_its_badge(shown):
    assert raw_text(shown) == "Paris."


def test_a_badge_an_edit_left_inside_the_text_is_taken_out_too():
    assert raw_text("Paris." + badge("v0003", 2) + " And more.") == "Paris. And more."


def test_the_page_script_strips_the_badge_as_the_server_does():
    """The edit box is cleaned in the browser with the same pattern (JavaScript's RegExp)."""
    assert json.dumps(DECORATION_PATTERN) in PAGE_JS
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    texts = ["Paris." + badge("v0003", 2, corrected=True), "a\n\n<sub>adapter: v1</sub>",
             "x" + badge(None) + " y", "1 < 2 and <sub>H2O</sub>"]
    script = (f"const re = new RegExp({json.dumps(DECORATION_PATTERN)}, 'g');"
              f"console.log(JSON.stringify({json.dumps(texts)}.map(t => t.replace(re, ''))))")
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [strip_decorations(t) for t in texts]
    assert json.loads(out.stdout)[-1] == texts[-1]  # a <sub> of the answer's own stays


def _row(mid, role, content, adapter=None, prompt=None):
    return {"id": mid, "role": role, "content": content, "adapter_version": adapter,
            "prompt_version": prompt, "sources_json": None}


def test_a_stored_conversation_shows_each_answers_latest_correction_marked():
    messages = [_row(1, "user", "Capital?"), _row(2, "assistant", "Lyon.", "v0003", 2),
                _row(3, "user", "And Italy?"), _row(4, "assistant", "Rome.", "v0003", 2)]
    history, ids, _ = history_from_store(messages, {2: "Paris."})
    assert ids == [2, 4]
    assert history[1]["content"] == shown_answer("Paris.", "v0003", 2, corrected=True)["content"]
    assert history[1]["content"].endswith(" · corrected</sub>")
    assert history[3]["content"] == shown_answer("Rome.", "v0003", 2)["content"]
    assert raw_text(history[1]["content"]) == "Paris."
    assert history_from_store(messages)[0][1]["content"].startswith("Lyon.")
