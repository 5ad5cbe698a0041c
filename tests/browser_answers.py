"""Browser steps about how an answer is shown: its own sources and citation marks, the mark
of a cut-off answer, a phone-sized screen, the view following a new answer."""

from __future__ import annotations

import json

from tests.api_support import PASSWORD
from tests.browser_support import ask, bots, log_in


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


def phone_step(page, url: str, shots) -> None:
    """On a 390-px screen a reopened conversation shows each answer with its own sources,
    and nothing is wider than the screen."""
    log_in(page, url, "alice", PASSWORD)
    page.get_by_role("button", name="Refresh").first.click()
    page.locator("#conversations input").click()
    page.get_by_role("option").first.click()
    page.locator("#open-conversation").click()
    bots(page).first.locator("details.answer-sources").wait_for()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px screen"
    shots.take(page, "phone-reopened")


def scroll_follow_step(page) -> None:
    """Scrolled up, a new question brings the view down and it follows the answer."""
    log = page.locator("#chatbot .bubble-wrap")
    log.evaluate("el => el.scrollTo(0, 0)")
    n = bots(page).count()
    ask(page, "Thanks. What else can an admin do?", n)
    gap = log.evaluate("el => el.scrollHeight - el.scrollTop - el.clientHeight")
    assert gap < 120, f"the view stayed {gap} px above the newest answer"
