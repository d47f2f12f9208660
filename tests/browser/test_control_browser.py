"""Keep the outlines of an uploaded photo, in a real browser.

Attach a photo → the "keep this …" card (outlines offered; pose and depth named as not
available offline) → press "Keep these outlines" → the Canny map is shown → say what to
draw → an image. The engine is the fake one (the tiny diffusers engine needs minutes for
a 768×512 picture on a shared 2-core box); the ControlNet itself is proven in
``tests/engines/test_controlnet_engine.py``. Screenshots ``control-*.png``: see
``tests/browser/test_chat_browser.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage
from tests.browser.test_vision_browser import attach_and_send, window_photo
from tests.support.app_process import AppProcess, app_env
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.replies import DESCRIPTION

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def app(ollama_server: FakeOllama, chainlit_root: Path,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    env = app_env(tmp_path_factory.mktemp("browser-control-app"), ollama_server,
                  CHAINLIT_APP_ROOT=str(chainlit_root))
    with AppProcess(env) as proc:
        yield proc
    assert "Traceback" not in proc.log(), proc.log()


def test_upload_keep_the_outlines_then_draw_under_them(
    app: AppProcess, new_context: Callable[..., Any], ollama: FakeOllama, tmp_path: Path
) -> None:
    chat = ChatPage(new_context(locale="en-US").new_page()).open(app.url)
    chat.bot_says("say GO anytime")
    ollama.enqueue(Reply(data=DESCRIPTION))
    attach_and_send(chat, window_photo(tmp_path), "describe this photo")
    offer = chat.bot_says("keeps part of this picture", timeout_ms=30_000)
    expect(offer).to_contain_text("Keep this pose")  # named, with what to fetch offline
    expect(offer).to_contain_text("vitpose")
    keep = chat.button("Keep these outlines")
    expect(keep).to_be_visible()
    expect(chat.button("Keep this pose")).to_have_count(0)
    chat.shot("control-01-offer", keep)

    before = chat.images.count()
    keep.click()
    chat.bot_says("this is what the picture will follow", timeout_ms=30_000)
    chat.wait_images(before + 1)  # the Canny map, shown before anything is drawn
    chat.bot_says("What should I draw with it?")
    chat.shot("control-02-map", chat.images.last)

    ollama.enqueue(Reply(content="a red sports car, photo"))  # the English prompt writer
    chat.send("a red sports car")
    img = chat.wait_images(before + 2)
    expect(chat.bot.filter(has_text="Seed").last).to_contain_text("a red sports car, photo")
    assert chat.natural_size(img) == (768, 512)  # the photo's landscape aspect, SD1.5 size
    chat.shot("control-03-result", img)
