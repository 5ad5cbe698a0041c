from chat.web.views import raw_text, shown_answer, shown_question


def test_badge_stays_outside_an_unclosed_code_block():
    shown = shown_answer("Here:\n```python\nprint(1)", "v0002")["content"]
    assert shown.count("```") == 2
    assert shown.rstrip().endswith("<sub>adapter: v0002</sub>")
    assert shown.index("<sub>") > shown.rindex("```")


def test_display_escaping_round_trips_to_what_was_written():
    question = "Is <b>bold</b> & fine?"
    assert "<b>" not in shown_question(question)["content"]
    assert raw_text(shown_question(question)["content"]) == question
    assert raw_text(shown_answer("1 < 2", "base")["content"]) == "1 < 2"
