"""Browser steps of the admin console besides training: an ingest with no file is a message,
the plots are drawn, a prompt profile's preview reads side by side and its activation asks
first, the adapters table lists the run's version, and the console fits a phone."""

from __future__ import annotations

from tests.browser_support import wait_for


def plot_drawn(page, elem_id: str) -> None:
    """The matplotlib figure is shown as an image inside the component."""
    page.locator(f"#{elem_id} img").first.wait_for(timeout=30_000)


def empty_ingest_step(page) -> None:
    page.get_by_role("tab", name="Documents").click()
    page.get_by_role("button", name="Ingest uploads").click()
    page.get_by_text("choose one or more files to ingest first").first.wait_for()
    page.get_by_role("tab", name="Dashboard").click()


def prompts_step(page, profiles, shots) -> None:
    from chat.prompt import PromptProfile

    version = profiles.add(PromptProfile("Answer in one short sentence."), "root", "shorter")
    active = profiles.active().version
    page.get_by_role("tab", name="Prompts").click()
    table = page.locator("#prompts-table")  # listed as the tab opens: no "nothing yet"
    wait_for(lambda: "shorter" in table.inner_text(), 30, f"v{version} in the profiles table")
    page.locator("#prompt-version input").fill(str(version))
    page.get_by_role("button", name="Preview vs active").click()
    preview = page.locator("#prompt-side-by-side")
    wait_for(lambda: preview.locator(".side-by-side").count() >= 1, 180, "the preview")
    assert preview.locator("h4").all_inner_texts()[:2] == ["active", "candidate"]
    overflow = preview.evaluate("el => el.scrollWidth - el.clientWidth")
    assert overflow <= 0, f"the preview scrolls sideways by {overflow} px"
    page.locator("#prompt-activate").click()
    confirm = page.locator("#confirm-activate-prompt")
    wait_for(lambda: f"v{version}" in confirm.inner_text(), 20, "Activate to ask first")
    shots.take(page, "prompt-preview-and-confirm")
    page.locator("#prompt-keep").click()
    wait_for(lambda: not confirm.is_visible(), 20, "Cancel to put the question away")
    assert profiles.active().version == active  # nothing changed
    page.locator("#prompt-activate").click()
    wait_for(lambda: confirm.is_visible(), 20, "the question again")
    page.locator("#prompt-version input").fill(str(active))  # another version in the box:
    wait_for(lambda: not confirm.is_visible(), 20, "the question to go")  # asked again
    page.locator("#prompt-version input").fill(str(version))
    page.locator("#prompt-activate").click()
    wait_for(lambda: f"v{version}" in confirm.inner_text() and confirm.is_visible(), 20,
             "the question about the version in the box")
    page.locator("#prompt-confirm").click()
    wait_for(lambda: profiles.active().version == version, 20, "the profile to be served")


def adapters_step(page, version: str, shots) -> None:
    """The run's adapter is listed with its status and gate figures as the tab opens."""
    page.get_by_role("tab", name="Adapters").click()
    table = page.locator("#adapters-table")
    wait_for(lambda: version in table.inner_text(), 30, f"{version} in the adapters table")
    shots.take(page, "adapters")


def phone_admin_step(page, url: str, shots) -> None:
    """The console on a 390-px screen: the dashboard fills and nothing is wider."""
    from tests.api_support import PASSWORD
    from tests.browser_support import log_in

    log_in(page, url, "root", PASSWORD)
    page.get_by_role("tab", name="Admin").click()
    page.locator("#feedback-stats").get_by_text("Serving").first.wait_for(timeout=30_000)
    plot_drawn(page, "thumbs-down-plot")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the console is {width} px wide on a 390 px screen"
    shots.take(page, "phone-admin")
