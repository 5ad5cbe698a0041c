"""Browser steps of the conversation sidebar: the list by latest activity, the open one
marked, New chat, rename, reopen (a pick from a comparison stands in its answer's place),
delete after a confirmation; on a phone the sidebar starts folded and the box is on screen."""

from __future__ import annotations

from tests.api_support import PASSWORD
from tests.browser_support import ask, bots, log_in, wait_for

BAR = "#conversation-bar"


def listed(page) -> list[str]:
    return [t.strip() for t in page.locator("#conversations label").all_inner_texts()]


def marked(page) -> str:
    return page.locator("#conversations label.selected").inner_text().strip()


def conversations_step(page, store, first_question: str, shots) -> None:
    wait_for(lambda: listed(page) and marked(page) == first_question, 30,
             "the open conversation marked in the list")
    page.locator("#new-chat").click()
    wait_for(lambda: bots(page).count() == 0, 20, "New chat to empty the chat")
    assert page.locator("#conversations label.selected").count() == 0
    ask(page, "What does the gate check?", 0)
    wait_for(lambda: listed(page)[:2] == ["What does the gate check?", first_question], 30,
             "the newest conversation at the top of the list")
    assert marked(page) == "What does the gate check?"
    _manage(page)
    page.locator("#conversation-title input").fill("Gate checks")
    page.locator("#rename-chat").click()
    wait_for(lambda: listed(page)[0] == "Gate checks", 20, "the new title in the list")
    shots.take(page, "conversations")

    page.locator("#conversations label").get_by_text(first_question).click()
    wait_for(lambda: bots(page).count() >= 2, 30, "the first conversation to reopen")
    assert marked(page) == first_question
    assert "your pick of two" in bots(page).first.inner_text()  # the comparison's pick

    page.locator("#conversations label").get_by_text("Gate checks").click()
    wait_for(lambda: marked(page) == "Gate checks", 20, "the renamed conversation to open")
    _manage(page)
    page.locator("#delete-chat").click()
    page.locator("#confirm-delete-chat").wait_for()
    shots.take(page, "delete-asks-first")
    page.locator("#confirm-delete-chat").click()
    wait_for(lambda: "Gate checks" not in listed(page), 20, "the deleted chat to leave the list")
    assert bots(page).count() == 0
    row = store.one("SELECT * FROM conversations WHERE title = 'Gate checks'")
    assert row["hidden_at"] and store.messages(row["id"])  # off the list, rows kept


def _manage(page) -> None:
    """Open the "rename or delete" fold if it is closed."""
    if not page.locator("#conversation-title input").is_visible():
        page.locator(f"{BAR}").get_by_text("Rename or delete this chat").click()
    page.locator("#conversation-title input").wait_for()


def phone_step(page, url: str, first_question: str, shots) -> None:
    """On a 390x844 screen the sidebar starts folded away and the question box is on the
    first screen; opened, picking a conversation reopens it (each answer with its own
    sources) and folds the sidebar again; nothing is wider than the screen."""
    log_in(page, url, "alice", PASSWORD)
    bar = page.locator(BAR)
    wait_for(lambda: "open" not in bar.get_attribute("class"), 20, "the sidebar to fold")
    box = page.locator("#question textarea").bounding_box()
    assert box["y"] + box["height"] <= 844, f"the question box is off the first screen: {box}"
    shots.take(page, "phone-first-screen")
    bar.locator(".toggle-button").click()
    page.locator("#conversations label").get_by_text(first_question).click()
    wait_for(lambda: "open" not in bar.get_attribute("class"), 20, "the sidebar to fold")
    bots(page).first.locator("details.answer-sources").wait_for()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px screen"
    shots.take(page, "phone-reopened")
