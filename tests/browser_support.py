"""Helpers for the browser test: headless Debian Chromium via Playwright, and page actions."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "browser"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update"]
FINISHED = ("succeeded", "rejected", "failed", "cancelled")


def launch_chromium(playwright):
    """Debian's chromium (never a downloaded one); skip with the reason when it is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                      args=LAUNCH_ARGS)


class Shots:
    """Screenshots of the key steps, in the test's folder and copied to test-artifacts/browser."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.n = 0
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(self, page, name: str) -> Path:
        self.n += 1
        path = self.folder / f"{self.n:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shutil.copy(path, ARTIFACTS / path.name)
        return path


def log_in(page, url: str, user: str, password: str) -> None:
    """Fill Gradio's login form and wait for the chat box."""
    page.goto(url)
    page.locator("input[data-testid=textbox]").fill(user)
    page.locator("input[type=password]").fill(password)
    page.get_by_role("button", name="Login").click()
    page.locator("#question textarea").wait_for(timeout=60_000)


def bots(page):
    return page.locator("#chatbot [data-testid=bot]")


def watch_bot_text(page) -> None:
    """Record every distinct text of the newest answer as it changes (to see the streaming)."""
    page.evaluate("""() => {
        window.__seen = [];
        const root = document.querySelector('#chatbot');
        new MutationObserver(() => {
            const all = root.querySelectorAll('[data-testid=bot]');
            if (!all.length) return;
            const t = all[all.length - 1].innerText.trim();
            if (t && window.__seen[window.__seen.length - 1] !== t) window.__seen.push(t);
        }).observe(root, {subtree: true, childList: true, characterData: true});
    }""")


def ask(page, question: str, n_before: int, badge: str = "answered by",
        timeout_s: float = 180):
    """Send a question and wait until answer number n_before+1 shows its version badge."""
    page.locator("#question textarea").fill(question)
    page.locator("#send").click()
    answer = bots(page).nth(n_before)
    answer.get_by_text(badge).wait_for(timeout=timeout_s * 1000)
    wait_idle(page)
    return answer


def busy(page) -> bool:
    """Whether a Gradio event is pending (progress shown, or the answers' buttons disabled)."""
    return bool(page.locator(".progress-text, .eta-bar, [data-testid=status-tracker] .wrap"
                             ".generating").count()
                or page.locator("#chatbot button[aria-label=Edit][disabled]").count())


def wait_idle(page, timeout_s: float = 120) -> None:
    """Until no Gradio event is pending (the buttons under the answers are enabled again)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not busy(page):
            return
        page.wait_for_timeout(200)
    raise AssertionError("the page stayed busy")


def wait_for(predicate, timeout_s: float, what: str, every_s: float = 0.5):
    """Poll predicate() until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
