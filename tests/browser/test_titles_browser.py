"""Chats get a title a person can find again in the sidebar.

Chainlit names a thread after its first message's text: "" for a picture sent alone
(shown as 「無題の会話」), "GO" for a chat that started with GO. Egaki names it once, after
a successful turn, from the person's words or the picture's caption. Run and
screenshots: see ``tests/browser/test_chat_browser.py``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage
from tests.support.app_process import AppProcess, app_env
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.replies import DESCRIPTION, SPEC

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def app(
    ollama_server: FakeOllama, chainlit_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppProcess]:
    env = app_env(tmp_path_factory.mktemp("browser-titles"), ollama_server,
                  CHAINLIT_APP_ROOT=str(chainlit_root))
    with AppProcess(env) as proc:
        yield proc
    assert "Traceback" not in proc.log(), proc.log()


def sidebar_titles(chat: ChatPage, url: str, want: str) -> list[str]:
    """The sidebar's chat names, as a fresh page (a new chat) lists them; reopened a few
    times until one holds ``want`` (the name is saved just after the turn's last message)."""
    titles: list[str] = []
    for _ in range(10):
        chat.page.goto(url)
        entries = chat.page.locator('li[id^="thread-"]')
        expect(entries.first).to_be_visible()
        titles = entries.all_inner_texts()
        if any(want in t for t in titles):
            break
        chat.page.wait_for_timeout(500)
    return titles


def test_a_chat_started_with_a_picture_alone_is_named_after_its_caption(
    app: AppProcess, new_context: Callable[..., Any], ollama: FakeOllama
) -> None:
    chat = ChatPage(new_context(locale="ja-JP").new_page()).open(app.url)
    chat.bot_says("おまかせ")
    buf = io.BytesIO()
    Image.new("RGB", (96, 64), (180, 120, 60)).save(buf, "JPEG")
    ollama.enqueue(Reply(data=DESCRIPTION))
    chat.page.locator("#upload-button-input").set_input_files(
        files=[{"name": "cat.jpg", "mimeType": "image/jpeg", "buffer": buf.getvalue()}]
    )
    expect(chat.page.locator("#message-composer").get_by_role("img", name="cat.jpg")
           .or_(chat.page.locator("#message-composer").get_by_text("cat.jpg"))).to_be_visible()
    chat.send("")  # the picture alone
    chat.bot_says("tabby cat sleeping on a windowsill", timeout_ms=30_000)
    titles = sidebar_titles(chat, app.url, "A cat naps by the window.")
    assert any("A cat naps by the window." in t for t in titles), titles
    assert not any("無題の会話" in t for t in titles), titles
    chat.shot("title-from-caption", whole=True)


def test_a_chat_started_with_go_is_named_after_its_picture(
    app: AppProcess, new_context: Callable[..., Any], ollama: FakeOllama
) -> None:
    chat = ChatPage(new_context(locale="en-US").new_page()).open(app.url)
    chat.bot_says("Tell me what picture")
    ollama.enqueue(Reply(data=SPEC))
    chat.send("GO")
    chat.wait_images(1)
    chat.bot_says("What next?")
    titles = sidebar_titles(chat, app.url, "two women playing beach volleyball")
    assert any("two women playing beach volleyball" in t for t in titles), titles
    assert "GO" not in [t.strip() for t in titles], titles
