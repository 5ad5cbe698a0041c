"""The whole loop in real headless Chromium: chat, feedback, compare, XSS, training, new badge."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

import pytest

from tests.api_support import PASSWORD, start_server
from tests.browser_admin import (
    adapters_step,
    empty_ingest_step,
    phone_admin_step,
    plot_drawn,
    prompts_step,
)
from tests.browser_answers import (
    own_sources_step,
    queued_question_step,
    scroll_follow_step,
    xss_step,
)
from tests.browser_conversations import conversations_step, phone_step
from tests.browser_support import (
    ARTIFACTS,
    FINISHED,
    Shots,
    ask,
    bots,
    launch_chromium,
    log_in,
    wait_for,
    watch_bot_text,
)

pytestmark = pytest.mark.browser
TRAIN_TIMEOUT_S = 420  # the small DPO run (1 step) plus the gate (its damage checks too), on
# a busy 2-core machine
QUESTION = "How do I roll back an adapter?"


@pytest.fixture
def live(monkeypatch, real_engine):
    """Accounts mode on a free loopback port: user alice, admin root; the shared real model."""
    from chat.auth import add_user
    from chat.config import load_config
    from chat.runtime import build_runtime
    from chat.server import build_server

    monkeypatch.setenv("CHAT_MAX_NEW_TOKENS", "48")
    monkeypatch.setenv("CHAT_AUTH", "accounts")
    monkeypatch.setenv("CHAT_WATCH_INTERVAL_S", "0.5")
    monkeypatch.setenv("CHAT_TRAIN_MAX_STEPS", "1")  # runs from the admin tab: one real step
    cfg = load_config()
    rt = build_runtime(cfg, engine=real_engine)
    add_user(rt.store, "alice", PASSWORD, "user")
    add_user(rt.store, "root", PASSWORD, "admin")
    url, stop = start_server(build_server(rt))
    yield {"url": url, "rt": rt, "store": rt.store, "cfg": cfg}
    stop_training(rt.store)
    stop()
    for version in rt.service.adapters.loaded:  # the engine is shared with later tests
        real_engine.unload_adapter(version)


def stop_training(store) -> None:
    """A run this test started must not outlive it: ask it to stop, then end its process."""
    from training.runs import request_cancel

    for run in store.query("SELECT id, pid FROM training_runs WHERE status IN "
                           "('queued', 'running')"):
        request_cancel(store, run["id"])
        if run["pid"]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(run["pid"], signal.SIGTERM)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = launch_chromium(p)
        yield chromium
        chromium.close()


PHONE = {"width": 390, "height": 844}


def new_page(browser, viewport: dict | None = None):
    context = browser.new_context(viewport=viewport or {"width": 1280, "height": 1000})
    context.set_default_timeout(30_000)
    return context.new_page()


def test_whole_loop_in_the_browser(live, browser, tmp_path):
    started = time.monotonic()
    shots = Shots(tmp_path / "screens")
    store = live["store"]
    page = new_page(browser)
    try:
        log_in(page, live["url"], "alice", PASSWORD)
        shots.take(page, "logged-in")
        chat_steps(page, store, shots)
        xss_step(page, shots)
        queued_question_step(page, store)
        scroll_follow_step(page)
        conversations_step(page, store, QUESTION, shots)
        page.context.close()
        page = new_page(browser, PHONE)
        phone_step(page, live["url"], QUESTION, shots)
        page.context.close()
        admin = new_page(browser)
        page = admin
        log_in(admin, live["url"], "root", PASSWORD)
        training_steps(admin, live, shots, tmp_path)
        admin.context.close()
        page = new_page(browser, PHONE)
        phone_admin_step(page, live["url"], shots)
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
        (ARTIFACTS / "failure.html").write_text(page.content())
        raise
    print(f"browser loop took {time.monotonic() - started:.0f} s")


# ---------------------------------------------------------------------------- as a user


def first_screen_step(page, store, shots) -> None:
    """A short welcome and three example questions from the knowledge base; nothing streams,
    so Stop cannot be pressed."""
    from retrieval.examples import example_questions
    from retrieval.retriever import KNOWLEDGE_DIR

    chat = page.locator("#chatbot")
    chat.get_by_text("Ask about the documents in the knowledge base").wait_for()
    wanted = example_questions(store, KNOWLEDGE_DIR)
    assert len(wanted) == 3
    for question in wanted:
        chat.locator("button.example").get_by_text(question).wait_for()
    assert page.locator("#stop").is_disabled()
    shots.take(page, "first-screen")


def chat_steps(page, store, shots) -> None:
    t0 = time.monotonic()
    first_screen_step(page, store, shots)
    watch_bot_text(page)
    answer = ask(page, QUESTION, 0, badge="answered by the base model")
    seen = page.evaluate("window.__seen")
    assert len(seen) >= 2 and len(seen[0]) < len(seen[-1]), f"not streamed: {seen}"
    row = store.one("SELECT * FROM messages WHERE role = 'assistant' ORDER BY id DESC")
    stored_sources = json.loads(row["sources_json"])
    assert stored_sources, "the knowledge base gave no sources for an on-topic question"
    title = stored_sources[0]["document"]
    # the Sources table is filled after the stream ends (innerText: only what is visible)
    page.wait_for_function("t => document.querySelector('#sources').innerText.includes(t)",
                           arg=title, timeout=30_000)
    shots.take(page, "answer-with-sources")
    print(f"first answer with sources: {time.monotonic() - t0:.0f} s")
    own_sources_step(answer, row, title)

    answer_panel(page, 0).locator("button[aria-label=Dislike]").click()
    box = page.locator("#reason-box:visible")  # gradio renders a group's elem_id twice
    box.first.wait_for()
    box.get_by_text("wrong facts", exact=True).first.click()
    box.locator("textarea").first.fill("the command is adapters activate")
    box.locator("#save-reason").first.click()
    wait_for(lambda: box.count() == 0, 20, "the reason picker to close")
    rating = wait_for(lambda: store.one(
        "SELECT * FROM ratings WHERE message_id = ? AND reason IS NOT NULL", (row["id"],)),
        20, "the rating row")
    assert (rating["user"], rating["value"], rating["reason"]) == ("alice", -1, "wrong facts")
    assert rating["comment"] == "the command is adapters activate"
    shots.take(page, "thumbs-down-saved")

    corrected = "Run python launch.py adapters activate with the earlier version."
    answer.hover()
    answer_panel(page, 0).locator("button[aria-label=Edit]").click()
    editor = page.locator("#chatbot textarea").first
    editor.wait_for()
    shown_html = ("<sub", "<sup", "<details")  # the badge, citation marks, the sources list
    assert not any(t in editor.input_value() for t in shown_html)
    assert editor.input_value().strip()
    editor.fill(corrected)
    shots.take(page, "editing")
    page.locator("#chatbot").get_by_role("button", name="Submit").click()
    correction = wait_for(lambda: store.one(
        "SELECT * FROM corrections WHERE message_id = ?", (row["id"],)), 20, "the correction")
    assert (correction["user"], correction["content"]) == ("alice", corrected)
    bots(page).first.get_by_text(corrected).wait_for()
    assert "corrected" in bots(page).first.locator("sub[title]").inner_text()
    shots.take(page, "corrected")
    compare_step(page, store, shots)


def compare_step(page, store, shots) -> None:
    """Two answers under A and B below their question; the pick is marked, takes the
    compared answer's place in the chat, and is stored with a preference's prompt."""
    page.locator("#compare").click()
    page.locator("#pick-row:visible").first.wait_for(timeout=180_000)
    a_text = page.locator("#answer-a").inner_text()
    said = "answered by the base model"
    assert said in a_text and said in page.locator("#answer-b").inner_text()
    assert a_text.lstrip().startswith("A") and QUESTION in page.locator(
        "#compare-question").inner_text()
    shots.take(page, "compare")
    page.locator("#pick-a:visible").first.click()
    wait_for(lambda: page.locator("#pick-row:visible").count() == 0, 20, "the picker to close")
    wait_for(lambda: "your pick" in page.locator("#answer-a").inner_text(), 20, "the pick mark")
    # the pick takes the place of the answer it was compared with
    wait_for(lambda: "your pick of two" in bots(page).first.inner_text(), 20, "the pick")
    comparison = wait_for(lambda: store.one("SELECT * FROM comparisons"), 20, "the comparison")
    assert (comparison["user"], comparison["choice"]) == ("alice", "a")
    assert comparison["prompt_json"] and QUESTION in comparison["prompt_json"]


def answer_panel(page, n: int):
    """The button row under assistant message n (Gradio renders it next to the bubble)."""
    return page.locator("#chatbot .message-buttons-left").nth(n)


# ---------------------------------------------------------------------------- as an admin


def import_pairs(store, folder) -> dict:
    """Enough preference pairs from two users (each under the per-user cap) for a DPO run."""
    from feedback.importer import import_file

    lines = []
    for i in range(12):
        fact = f"{i} plus {i} is {2 * i}."
        lines.append({"type": "preference", "user": ("ann", "ben")[i % 2],
                      "prompt": f"What is {i} plus {i}?",
                      "chosen": "Short answer: " + fact, "rejected": fact})
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return import_file(store, path)


def training_steps(page, live, shots, tmp_path) -> None:
    store = live["store"]
    assert import_pairs(store, tmp_path) == {"preference": 12}
    page.get_by_role("tab", name="Admin").click()
    # the dashboard is filled as the console opens, with no Refresh
    page.locator("#feedback-stats").get_by_text("Serving").first.wait_for(timeout=30_000)
    plot_drawn(page, "thumbs-down-plot")  # alice's thumbs down, one day: a visible point
    shots.take(page, "admin-dashboard")
    empty_ingest_step(page)
    page.get_by_role("tab", name="Training").click()
    page.locator("#train-method input").first.click()
    page.get_by_role("option", name="dpo", exact=True).click()
    page.locator("#train-start").click()
    progress = page.locator("#train-progress")
    wait_for(lambda: progress.get_attribute("data-status") in ("queued", "running"), 60,
             "the run to start", every_s=0.2)
    shots.take(page, "training-started")
    t0 = time.monotonic()
    status = wait_for(lambda: _finished(progress), TRAIN_TIMEOUT_S, "the training run", 1)
    print(f"training run (dpo) took {time.monotonic() - t0:.0f} s: {status}")
    run = store.one("SELECT * FROM training_runs ORDER BY id DESC")
    assert status == run["status"] and run["method"] == "dpo", run
    assert status in ("succeeded", "rejected"), f"run {status}: {run['error']}"
    verdict = page.locator("#gate-verdict").first
    wait_for(lambda: "Gate" in verdict.inner_text(), 20, "the gate's verdict")
    assert run["adapter_version"] in verdict.inner_text()
    said = ("Gate passed",) if status == "succeeded" else ("Gate failed", "Gate: no visible change")
    assert any(words in verdict.inner_text() for words in said)
    assert "100%" in progress.inner_text() or status == "rejected"
    plot_drawn(page, "loss-plot")
    shots.take(page, f"training-{status}")
    adapters_step(page, run["adapter_version"], shots)
    prompts_step(page, live["rt"].service.prompts, shots)

    activated = json.loads(run["metrics_json"]).get("activated")
    expected = run["adapter_version"] if activated else "base"
    page.get_by_role("tab", name="Chat").first.click()
    if activated:  # the server's registry watcher swaps the adapter in within a second or so
        wait_for(lambda: live["rt"].service.adapters.active == expected, 30, "the hot swap")
    said = "the base model" if expected == "base" else f"adapter {expected}"
    answer = ask(page, QUESTION, 0, badge=f"answered by {said}")
    assert f"answered by {said}" in answer.inner_text()
    row = store.one("SELECT adapter_version FROM messages WHERE role = 'assistant' "
                    "ORDER BY id DESC")
    assert (row["adapter_version"] or "base") == expected
    shots.take(page, f"answer-after-training-{expected}")


def _finished(progress) -> str | None:
    status = progress.get_attribute("data-status")
    return status if status in FINISHED else None
