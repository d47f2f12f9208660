"""Two browser tabs asking for a picture at once, with the real diffusers engine.

The engine runs a tiny random-weight SD1.5 pipeline (``tiny_models``), so the first job
really takes a moment (loading the pipeline): the second tab must be told it waits in
the queue, then both tabs get their own, loadable image. Run and screenshots: see
``tests/browser/test_chat_browser.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.chat_page import ChatPage
from tests.support.app_process import AppProcess, app_env
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.replies import SPEC
from tests.support.tiny_pipelines import TinyModels

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def app(
    ollama_server: FakeOllama,
    chainlit_root: Path,
    tiny_models: TinyModels,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AppProcess]:
    env = app_env(tmp_path_factory.mktemp("browser-queue-app"), ollama_server, tiny_models,
                  CHAINLIT_APP_ROOT=str(chainlit_root))
    with AppProcess(env) as proc:
        yield proc
    assert "Traceback" not in proc.log(), proc.log()


def test_two_tabs_at_once_queue_up_and_both_get_their_image(
    app: AppProcess, new_context: Callable[..., Any], ollama: FakeOllama
) -> None:
    context = new_context(locale="ja-JP")
    tabs = [ChatPage(context.new_page()).open(app.url) for _ in range(2)]
    for tab in tabs:
        tab.bot_says("おまかせ")
        tab.choose_settings(steps="4")  # the tiny model is quick, but CPUs may be busy
        tab.watch_for("順番待ち")  # the queue notice is removed once the job starts
    ollama.enqueue(Reply(data=SPEC), Reply(data=SPEC))
    for tab in tabs:  # both ask before either image exists
        tab.send("GO")
    for i, tab in enumerate(tabs):
        img = tab.wait_images(1, timeout_ms=90_000)
        tab.shot(f"queue-tab-{'ab'[i]}", img)
    alts = [tab.images.first.get_attribute("alt") for tab in tabs]
    assert alts[0] != alts[1]  # two jobs, two seeds, each shown in its own tab
    assert [tab.has_seen("順番待ち") for tab in tabs].count(True) == 1  # one tab waited
    for tab in tabs:
        expect(tab.bot.filter(has_text="順番待ち")).to_have_count(0)  # the notice goes away
