"""A picture whose tab was closed is never lost, and nobody is left guessing (issue 17).

* A picture whose tab was closed mid-drawing lands in its saved chat (and the ledger);
  reopened, the chat shows it with its "What next?" buttons (sent once the page has the
  thread: Chainlit replaces the page's messages with the thread right after
  ``on_chat_resume``).
* Chats waiting behind it are told whose picture they wait for.
* Reopened while its picture is still drawing, the chat gets the picture live.
* With ``EGAKI_CLOSED_TAB_JOBS=cancel`` (this module's app), a picture whose tab closed
  before it started is not drawn, and its chat says why.

Run and screenshots: see ``tests/browser/test_chat_browser.py``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage
from tests.support.app_process import AppProcess, app_env
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.replies import SPEC

pytestmark = [pytest.mark.slow, pytest.mark.browser]

STEP_S = 0.4  # the fake engine's seconds per step: SPEC's 20 steps take ~8 s


@pytest.fixture(scope="module")
def app(
    ollama_server: FakeOllama, chainlit_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppProcess]:
    env = app_env(tmp_path_factory.mktemp("browser-closed-tab"), ollama_server,
                  CHAINLIT_APP_ROOT=str(chainlit_root), EGAKI_FAKE_STEP_S=str(STEP_S),
                  EGAKI_CLOSED_TAB_JOBS="cancel")
    with AppProcess(env) as proc:
        yield proc
    assert "Traceback" not in proc.log(), proc.log()


def test_a_picture_from_a_closed_tab_is_in_its_reopened_chat_with_its_buttons(
    app: AppProcess, new_context: Callable[..., Any], ollama: FakeOllama
) -> None:
    context = new_context(locale="en-US")
    chat = ChatPage(context.new_page()).open(app.url)
    chat.bot_says("Tell me what picture")
    ollama.enqueue(Reply(data=SPEC))
    chat.send("GO")
    expect(chat.page).to_have_url(re.compile(r"/thread/[0-9a-f-]+$"))
    thread_url = chat.page.url
    chat.bot_says("▰")  # drawing: the progress bar is there
    chat.page.close()  # the person leaves mid-drawing
    time.sleep(20 * STEP_S + 3)  # the job runs on and finishes unseen

    again = ChatPage(context.new_page())
    again.page.goto(thread_url)
    again.wait_images(1)  # the picture landed in the saved chat, recorded in the ledger:
    again.bot_says(re.compile(r"CFG 7 · #\w+"))  # its caption names its ledger record
    expect(again.button("🎲 Variations").last).to_be_visible(timeout=15_000)  # remembered
    again.shot("closed-tab-reopened", whole=True)


def _ask_for_a_picture(chat: ChatPage, ollama: FakeOllama) -> ChatPage:
    ollama.enqueue(Reply(data=SPEC))
    chat.send("GO")
    expect(chat.page).to_have_url(re.compile(r"/thread/[0-9a-f-]+$"))
    return chat


def test_closed_tabs_pictures_are_named_in_the_queue_delivered_live_or_not_started(
    app: AppProcess, new_context: Callable[..., Any], ollama: FakeOllama
) -> None:
    context = new_context(locale="en-US")
    tab_a, tab_b, tab_c = (ChatPage(context.new_page()).open(app.url) for _ in range(3))
    for tab in (tab_a, tab_b, tab_c):
        tab.bot_says("Tell me what picture")
    tab_a.choose_settings(steps="50")  # A draws for 50 × STEP_S
    _ask_for_a_picture(tab_a, ollama).bot_says("▰")
    _ask_for_a_picture(tab_b, ollama).bot_says("Waiting in line")
    _ask_for_a_picture(tab_c, ollama).bot_says("Waiting in line")
    url_a, url_c = tab_a.page.url, tab_c.page.url

    tab_a.page.close()  # A's picture draws on unseen; B hears whose picture it waits for
    notice = tab_b.bot_says("whose tab was closed")
    expect(notice).to_contain_text(
        "a picture for your chat “two women playing beach volleyball”, whose tab was "
        "closed — it will be saved there")
    tab_b.shot("closed-tab-queue-notice", notice)
    tab_c.page.close()  # C's picture has not started: cancelled (EGAKI_CLOSED_TAB_JOBS)

    reopened = ChatPage(context.new_page())  # A reopened while its picture still draws
    reopened.page.goto(url_a)
    progress = reopened.bot_says("Drawing")  # its saved progress message, still moving:
    expect(progress).not_to_have_text(progress.inner_text())
    reopened.wait_images(1, timeout_ms=60 * 1000)  # arrives live, no reload
    expect(reopened.button("🎲 Variations")).to_be_visible()
    reopened.shot("closed-tab-delivered-live", whole=True)
    tab_b.wait_images(1, timeout_ms=30_000)  # B's turn came after A's

    not_drawn = ChatPage(context.new_page())
    not_drawn.page.goto(url_c)
    not_drawn.bot_says("its tab was closed before it started")
    expect(not_drawn.images).to_have_count(0)
