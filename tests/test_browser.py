"""The Chat tab in a real headless Chromium: chat, reload the page, the conversation is still there."""

import shutil
from pathlib import Path

import pytest

from .conftest import ROOT
from .test_app_e2e import App

pytestmark = pytest.mark.e2e
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture
def page(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed; `make test` installs it")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        yield context.new_page()
        browser.close()


def wait_for_the_turn_to_end(page, timeout: float = 120_000) -> None:
    """The message box is locked while a turn runs (see app.respond)."""
    page.wait_for_function(
        "!document.querySelector('textarea[placeholder^=\"Type a message\"]').disabled", timeout=timeout
    )


def test_chat_in_the_browser_and_reload(tmp_path, tiny_config_file, page):
    ARTIFACTS.mkdir(exist_ok=True)
    app = App(tiny_config_file, tmp_path / "browser.db", tmp_path)
    try:
        app.wait()
        page.goto(app.url, wait_until="networkidle")
        page.get_by_label("Your name").fill("frank")
        page.get_by_label("Your name").press("Enter")
        message = page.get_by_role("textbox", name="Message")
        message.fill("hello from the browser")
        message.press("Enter")
        page.get_by_text("hello from the browser").first.wait_for(timeout=60_000)
        wait_for_the_turn_to_end(page)
        page.screenshot(path=str(ARTIFACTS / "chat.png"), full_page=True)

        page.reload()
        page.get_by_text("hello from the browser").first.wait_for(timeout=60_000)
        assert page.get_by_label("Your name").input_value() == "frank"
        page.screenshot(path=str(ARTIFACTS / "chat-after-reload.png"), full_page=True)

        page.get_by_label("Your name").fill("grace")
        page.get_by_label("Your name").press("Enter")
        page.wait_for_timeout(1500)
        assert page.get_by_text("hello from the browser").count() == 0  # grace never sees frank's chat

        message.fill("   ")
        message.press("Enter")
        page.get_by_text("the message is empty").first.wait_for(timeout=30_000)
        wait_for_the_turn_to_end(page)
        assert message.input_value() == "   "  # a refused message stays in the box
    finally:
        app.stop()
