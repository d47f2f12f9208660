"""Masks from words in a real browser: attach a photo, say "change the plant to a red mug",
see the mask already painted in the ``MaskPainter``, accept it, get before/after.

The app runs with ``EGAKI_SEGMENTER=fake`` (a fixed box in the middle of the picture) and
the fake image engine: this test is about the page and the wiring, not the pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import TIMEOUT_MS, ChatPage
from tests.browser.test_vision_browser import (
    Console,
    attach_and_send,
    send_mask_and_inpaint,
    window_photo,
)
from tests.support.app_process import AppProcess, app_env
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.replies import DESCRIPTION

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def app(
    ollama_server: FakeOllama, chainlit_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppProcess]:
    env = app_env(tmp_path_factory.mktemp("browser-mask-words-app"), ollama_server,
                  CHAINLIT_APP_ROOT=str(chainlit_root), EGAKI_SEGMENTER="fake")
    with AppProcess(env) as proc:
        yield proc
    assert "Traceback" not in proc.log(), proc.log()


def test_change_the_x_shows_the_mask_in_the_painter_and_accepting_inpaints(
    app: AppProcess, new_context: Callable[..., Any], ollama: FakeOllama, tmp_path: Path
) -> None:
    page = new_context(locale="en-US").new_page()
    console = Console(page)
    chat = ChatPage(page).open(app.url)
    chat.bot_says("say GO anytime")
    console.lines.clear()  # loading logs two 401s (Chainlit asks /user before logging in)
    ollama.enqueue(Reply(data=DESCRIPTION))
    attach_and_send(chat, window_photo(tmp_path), "describe this photo")
    chat.bot_says("tabby cat sleeping on a windowsill", timeout_ms=30_000)

    ollama.enqueue(Reply(data={"target": "plant", "position": "none", "ordinal": None,
                               "replacement": "a red mug"}))  # fmt: skip
    chat.send("Change the plant to a red mug")
    chat.bot_says("I marked “plant” in red", timeout_ms=30_000)
    canvas = chat.page.locator("canvas").last
    expect(canvas).to_be_visible(timeout=TIMEOUT_MS)
    use = chat.button("Use this mask")
    expect(use).to_be_enabled()
    painted = page.wait_for_function(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
                  return n > 0 && n; }""",
        arg=canvas.element_handle(), timeout=TIMEOUT_MS,
    ).json_value()  # fmt: skip
    # the fixed box is the middle 40 % × 40 % of the 384×256 photo: 154×102 pixels
    assert abs(painted - 154 * 102) < 154 * 102 * 0.1, painted
    field = chat.page.get_by_placeholder("What should appear there? (optional)")
    expect(field).to_have_value("a red mug")
    chat.shot("mask-words-01-proposed", use)

    region, proposal = send_mask_and_inpaint(chat, use, ollama)
    assert any(m.get("images") for m in region["messages"])  # the crop under the mask
    assert "a red mug" in str(proposal["messages"])
    chat.shot("mask-words-02-before-after", chat.images.last)
    assert console.errors() == [], "\n".join(console.lines)
