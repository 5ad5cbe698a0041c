"""Browser steps of the chat after its first answer: the answer's own sources and citation
marks, the mark of a cut-off answer, a hostile question shown inert, a question queued while
an answer streams, the view following a new answer."""

from __future__ import annotations

import json

from tests.browser_support import ask, bots, busy, wait_idle

XSS = ('Is this safe? <script>window.__xss=1</script> <img src=x onerror="window.__xss=2"> '
       "[click me](javascript:window.__xss=3)")


def own_sources_step(answer, row: dict, title: str) -> None:
    """The answer carries its own folded list of sources, its inline [n] marks are the ones
    the server made for it, and a cut-off answer says so."""
    from chat.web.views import shown_answer

    sources = json.loads(row["sources_json"])
    block = answer.locator("details.answer-sources")
    block.locator("summary").click()
    assert title in block.inner_text() and "relevance" in block.inner_text()
    expected = shown_answer(row["content"], None, sources=sources)["content"]
    assert answer.locator("sup.cite").count() == expected.count('<sup class="cite"')
    cut = json.loads(row["params_json"])["cut_off"]
    assert ("cut off at 48 tokens" in answer.locator("sub").inner_text()) == cut


def scroll_follow_step(page) -> None:
    """Scrolled up, a new question brings the view down and it follows the answer."""
    log = page.locator("#chatbot .bubble-wrap")
    log.evaluate("el => el.scrollTo(0, 0)")
    n = bots(page).count()
    ask(page, "Thanks. What else can an admin do?", n)
    gap = log.evaluate("el => el.scrollHeight - el.scrollTop - el.clientHeight")
    assert gap < 120, f"the view stayed {gap} px above the newest answer"


def xss_step(page, shots) -> None:
    ask(page, XSS, 1)
    wait_idle(page)
    # a new question puts the last comparison away
    assert page.locator("#answer-a").inner_text().strip() == ""
    assert page.locator("#compare-question").inner_text().strip() == ""
    assert page.evaluate("typeof window.__xss") == "undefined"
    chat = page.locator("#chatbot")
    assert chat.get_by_text("Is this safe?").count() >= 1  # the message itself is shown
    assert chat.locator("script").count() == 0
    assert chat.locator("img[onerror]").count() == 0
    assert chat.locator("[onerror], [onclick], [onload]").count() == 0
    assert page.locator("a[href^='javascript' i]").count() == 0
    assert "__xss" not in "".join(page.evaluate(
        "[...document.scripts].map(s => s.textContent)"))
    shots.take(page, "xss-not-executed")


def queued_question_step(page, store) -> None:
    """A question sent while an answer streams is kept and asked once that answer is done
    (it used to be wiped from the box by the stream and never asked)."""
    # a long answer (to the 48-token cap), so it still streams when the next question is sent
    first = "Count from one to one hundred in words, one number a line."
    follow_up = "Which number was the first?"
    n = bots(page).count()
    page.locator("#question textarea").fill(first)
    page.locator("#send").click()
    bots(page).nth(n).wait_for(timeout=120_000)  # the answer has begun to stream
    assert page.locator("#stop").is_enabled()
    page.locator("#question textarea").fill(follow_up)
    streaming = busy(page)
    page.locator("#send").click()
    assert streaming, "the first answer was already done: nothing was queued"
    assert page.locator("#question textarea").input_value() == follow_up
    bots(page).nth(n + 1).get_by_text("answered by").wait_for(timeout=180_000)
    wait_idle(page)
    asked = page.locator("#chatbot [data-testid=user]").all_inner_texts()[-2:]
    assert [t.strip() for t in asked] == [first, follow_up]
    stored = [r["content"] for r in store.query(
        "SELECT content FROM messages WHERE role = 'user' ORDER BY id DESC LIMIT 2")]
    assert stored == [follow_up, first]
    assert page.locator("#question textarea").input_value() == ""
