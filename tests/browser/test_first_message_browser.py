"""The first message of a new chat, typed the moment the page shows its composer.

Chainlit 2.12 ignores Enter while the chat is not ready (socket not connected yet, or
``on_chat_start`` still running) and replaces the welcome screen's composer — with
whatever was typed in it — when the greeting arrives. These tests type and press Enter
at those moments, like a quick person does, and ask for the message to be answered.
Run and screenshots: see ``tests/browser/test_chat_browser.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Route, expect

from tests.browser.chat_page import ChatPage
from tests.support.app_process import AppProcess, app_env
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.replies import INTERVIEW_JA

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SOCKET = "**/ws/socket.io/**"
SHOW_DELAY_S = 4.0  # a slow Ollama: the start's model check takes this long


@pytest.fixture(scope="module")
def app(
    ollama_server: FakeOllama, chainlit_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppProcess]:
    env = app_env(tmp_path_factory.mktemp("browser-first-message"), ollama_server,
                  CHAINLIT_APP_ROOT=str(chainlit_root))
    with AppProcess(env) as proc:
        yield proc
    assert "Traceback" not in proc.log(), proc.log()


def test_enter_before_the_socket_connects_is_held_then_answered(
    app: AppProcess, new_context: Callable[..., Any], ollama: FakeOllama
) -> None:
    page = new_context(locale="ja-JP").new_page()
    held: list[Route] = []
    released = False

    def hold(route: Route) -> None:  # the page is up, its socket.io handshake is not
        if released:
            route.fallback()  # on to the context's loopback-only router
        else:
            held.append(route)

    page.route(SOCKET, hold)
    page.goto(app.url)
    chat = ChatPage(page)
    expect(chat.composer).to_be_visible(timeout=30_000)  # after the login round trip
    page.wait_for_function("window.egakiComposerReady === true")  # loads beside the page
    chat.composer.fill("ビーチバレーの写真を作りたい")
    chat.composer.press("Enter")  # not chat.send(): no waiting for the send button
    note = page.locator("#egaki-pending")
    expect(note).to_contain_text("準備中")  # visibly held, not silently dropped
    expect(chat.composer).to_have_value("ビーチバレーの写真を作りたい")
    chat.shot("first-01-held")

    ollama.enqueue(Reply(data=INTERVIEW_JA))
    released = True
    for route in held:
        route.fallback()
    expect(chat.user.filter(has_text="ビーチバレーの写真を作りたい")).to_have_count(1)
    chat.bot_says("時間帯や光はどうしますか？")
    expect(note).to_be_hidden()
    expect(chat.composer).to_have_value("")
    # The greeting stays first: the held message went after it.
    texts = chat.bot.all_inner_texts()
    assert "おまかせ" in texts[0], texts
    chat.shot("first-02-answered")


def test_enter_while_a_slow_start_checks_the_model_is_answered(
    app: AppProcess, new_context: Callable[..., Any], ollama: FakeOllama
) -> None:
    ollama.show_delay = SHOW_DELAY_S  # /api/show answers late: on_chat_start is slow
    try:
        chat = ChatPage(new_context(locale="en-US").new_page()).open(app.url)
        chat.bot_says("Tell me what picture")  # the greeting
        ollama.enqueue(Reply(data=INTERVIEW_JA))
        t0 = time.monotonic()
        chat.composer.fill("I want a beach volleyball photo")
        chat.composer.press("Enter")
        # Shown at once as the person's message (the app queues it until it is ready)...
        expect(chat.user.filter(has_text="beach volleyball")).to_have_count(1, timeout=2_000)
        # ...and answered once the model check is over.
        chat.bot_says("What time of day or light", timeout_ms=SHOW_DELAY_S * 1000 + 20_000)
        assert time.monotonic() - t0 < SHOW_DELAY_S + 20
    finally:
        ollama.show_delay = 0.0
