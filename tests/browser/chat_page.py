"""The Egaki chat as a person sees it in a browser tab: a tiny page object over Playwright.

Selectors come from Chainlit 2.12's DOM: ``#chat-input`` (composer textarea),
``#chat-submit``, ``[data-step-type=assistant_message]`` (one per bot message),
``img.inline-image`` (a ``cl.Image(display="inline")``), ``#chat-settings-open-modal`` /
``#chat-settings`` / ``#confirm`` (settings panel), ``#readme-button``. Buttons made from
``cl.Action`` are plain ``<button>`` elements named by their label.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page, expect

from tests.support.app_process import ROOT

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
TIMEOUT_MS = 20_000
# Beginnings of tools.core.i18n's internal_error / stream_broken texts (en and ja).
ERROR_MARKERS = ("Something went wrong", "内部でエラー", "stopped answering", "応答が途中で")


class ChatPage:
    """One tab of the chat; every wait has a timeout and fails with what was on screen."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.composer = page.locator("#chat-input")
        self.send_button = page.locator("#chat-submit")
        self.bot = page.locator('[data-step-type="assistant_message"]')
        self.user = page.locator('[data-step-type="user_message"]')
        self.images = page.locator("img.inline-image")

    def open(self, url: str) -> ChatPage:
        self.page.goto(url)
        expect(self.composer).to_be_visible(timeout=TIMEOUT_MS)
        return self

    def send(self, text: str) -> None:
        """Type into the composer and press Enter once sending is possible (while the app
        is still busy, e.g. finishing on_chat_start, Chainlit shows a stop button and
        ignores Enter), as a person does."""
        self.composer.fill(text)
        expect(self.send_button).to_be_enabled(timeout=TIMEOUT_MS)
        self.composer.press("Enter")

    def bot_says(self, text: str | re.Pattern[str], timeout_ms: int = TIMEOUT_MS) -> Locator:
        """The last bot message containing ``text``, once it is visible."""
        hit = self.bot.filter(has_text=text).last
        expect(hit).to_be_visible(timeout=timeout_ms)
        return hit

    def button(self, label: str) -> Locator:
        """The newest button with exactly this label (older cards keep theirs)."""
        return self.page.get_by_role("button", name=label, exact=True).last

    def wait_images(self, count: int, timeout_ms: int = 30_000) -> Locator:
        """Wait until ``count`` inline images exist and the last one has really loaded;
        fail at once if the app answers with an error instead."""
        # Looked up afresh on every poll: React may re-mount the message meanwhile. The
        # images are loading="lazy", so an off-screen one never loads: scroll to it.
        outcome = self.page.wait_for_function(
            """([n, markers]) => {
                const bot = [...document.querySelectorAll(
                    '[data-step-type="assistant_message"]')].map(m => m.textContent);
                const error = bot.find(t => markers.some(m => t.includes(m)));
                if (error) return "error: " + error;
                const img = document.querySelectorAll("img.inline-image")[n - 1];
                if (!img) return false;
                img.scrollIntoView({block: "center"});
                return img.complete && img.naturalWidth > 0 && "ok";
            }""",
            arg=[count, list(ERROR_MARKERS)], timeout=timeout_ms, polling=100,
        ).json_value()
        assert outcome == "ok", f"no image {count}; the app said {outcome!r}"
        return self.images.nth(count - 1)

    def choose_settings(self, shot: str | None = None, **choices: str) -> None:
        """Open the settings panel, pick ``option`` in each select ``id``, and confirm."""
        self.page.locator("#chat-settings-open-modal").click()
        panel = self.page.locator("#chat-settings")
        expect(panel).to_be_visible()
        for widget, option in choices.items():
            panel.locator(f"#{widget}").click()
            self.page.get_by_role("option", name=option, exact=True).click()
            expect(panel.locator(f"#{widget}")).to_have_text(option)
        if shot:
            self.shot(shot)
        panel.locator("#confirm").click()
        expect(panel).to_be_hidden()

    def watch_for(self, text: str) -> None:
        """Remember if ``text`` ever shows up, even in a message removed soon after."""
        self.page.evaluate(
            """text => {
                window.__egakiSeen = window.__egakiSeen || {};
                const check = () => {
                    if (document.body.textContent.includes(text)) window.__egakiSeen[text] = true;
                };
                new MutationObserver(check).observe(
                    document.body, {childList: true, subtree: true, characterData: true});
                check();
            }""",
            text,
        )

    def has_seen(self, text: str) -> bool:
        return bool(self.page.evaluate("t => !!(window.__egakiSeen || {})[t]", text))

    def natural_size(self, img: Locator) -> tuple[int, int]:
        w, h = img.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        return int(w), int(h)

    def shot(self, name: str, target: Locator | None = None, whole: bool = False) -> Path:
        """Screenshot the window to artifacts/screenshots/<name>.png, scrolled to ``target``;
        with ``whole`` the window is first made tall enough to show all of ``target``."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        size = self.page.viewport_size or {"width": 1280, "height": 900}
        if target is not None and whole:
            box = target.bounding_box() or {"height": 0}
            tall = max(size["height"], int(box["height"]) + 400)
            self.page.set_viewport_size({**size, "height": tall})
            self.page.wait_for_timeout(300)  # let the chat re-layout
        try:
            if target is not None:
                self._scroll_to(target)
            self.page.screenshot(path=str(path))
        finally:
            self.page.set_viewport_size(size)
        return path

    def _scroll_to(self, target: Locator) -> None:
        for _ in range(3):
            try:  # React may re-mount a message while it is updated: re-resolve and retry
                target.scroll_into_view_if_needed(timeout=5_000)
                return
            except PlaywrightError:
                self.page.wait_for_timeout(200)
