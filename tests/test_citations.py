"""Inline citations [n] matching the answer's Sources list, and each answer's own list."""

import json
import shutil
import subprocess

import pytest

from chat.citations import cite
from chat.prompt import Source
from chat.web.views import DECORATION_PATTERN, history_from_store, raw_text, shown_answer

BEES = "Honey bees forage within a few kilometres of the hive and make honey from nectar."
TRAINS = "Steam locomotives boil water in a boiler; the steam pushes pistons."
SOURCES = [Source(11, "bees.md", 0.61, BEES), Source(12, "trains.md", 0.42, TRAINS)]


def test_each_sentence_cites_the_source_it_draws_on():
    answer = "Bees forage near their hive. Steam pushes the pistons! Trains are fun."
    assert cite(answer, [BEES, TRAINS]) == (
        "Bees forage near their hive [1]. Steam pushes the pistons [2]! Trains are fun.")


def test_a_sentence_the_model_cited_and_code_are_left_as_written():
    answer = "Bees forage near the hive [2].\n```\nbees forage near hive.\n```\nDone."
    assert cite(answer, [BEES, TRAINS]) == answer


def test_a_sentence_unlike_every_source_gets_no_mark():
    assert cite("Chess endgames are won by promoting pawns.", [BEES, TRAINS]) == (
        "Chess endgames are won by promoting pawns.")


def test_the_chat_shows_marks_and_its_own_sources_and_edits_get_the_text_back():
    text = "Bees forage near their hive. Trains are fun."
    shown = shown_answer(text, "base", 1, sources=SOURCES)["content"]
    assert 'title="source 1: bees.md">[1]</sup>.' in shown
    assert '<details class="answer-sources"><summary>2 sources</summary>' in shown
    assert "<b>trains.md</b>" in shown and "relevance 0.42" in shown
    assert shown.index("</details>") < shown.index("<sub")  # the badge stays last
    assert raw_text(shown) == text


def test_a_reopened_conversation_keeps_each_answers_sources():
    rows = [{"id": 1, "role": "user", "content": "Bees?"},
            {"id": 2, "role": "assistant", "content": "Bees forage near their hive.",
             "adapter_version": None, "prompt_version": 1, "params_json": None,
             "sources_json": json.dumps([SOURCES[0].as_dict()])},
            {"id": 3, "role": "user", "content": "Chess?"},
            {"id": 4, "role": "assistant", "content": "No idea.", "adapter_version": None,
             "prompt_version": 1, "params_json": None, "sources_json": "[]"}]
    history, _, last_sources = history_from_store(rows)
    assert "bees.md" in history[1]["content"] and "[1]</sup>" in history[1]["content"]
    assert "answer-sources" not in history[3]["content"] and last_sources == []


def test_the_page_script_strips_marks_and_sources_as_the_server_does():
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    texts = [shown_answer("Bees forage near their hive. Fine.", "v1", 2,
                          sources=SOURCES)["content"], "See [1] & <sup>2</sup>."]
    script = (f"const re = new RegExp({json.dumps(DECORATION_PATTERN)}, 'g');"
              f"console.log(JSON.stringify({json.dumps(texts)}.map(t => t.replace(re, ''))))")
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ["Bees forage near their hive. Fine.", texts[1]]
