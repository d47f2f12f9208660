"""The machine's preset in the panel of the chat that made the first picture (issue #15),
in a real browser: the real diffusers engine (tiny SD1.5 pipeline, CPU) times one UNet
step after that picture; the chat says why and its settings panel now shows the preset,
keeping the steps the person chose."""

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
    env = app_env(tmp_path_factory.mktemp("browser-machine-app"), ollama_server, tiny_models,
                  CHAINLIT_APP_ROOT=str(chainlit_root), EGAKI_DEVICE="cpu",
                  EGAKI_MEASURE_MACHINE="1", EGAKI_CPU_RUNTIME="torch")
    with AppProcess(env) as proc:
        yield proc
    assert "Traceback" not in proc.log(), proc.log()


def test_the_panel_shows_the_measured_preset_after_the_first_picture(
    app: AppProcess, new_context: Callable[..., Any], ollama: FakeOllama
) -> None:
    chat = ChatPage(new_context().new_page()).open(app.url)
    chat.bot_says("GO")
    chat.choose_settings(steps="4")
    ollama.enqueue(Reply(data=SPEC))
    chat.send("GO")
    chat.wait_images(1, timeout_ms=90_000)
    note = chat.bot_says("This computer makes a full-quality picture", timeout_ms=60_000)
    chat.page.locator("#chat-settings-open-modal").click()
    panel = chat.page.locator("#chat-settings")
    expect(panel).to_be_visible()
    preset = panel.locator("#preset").inner_text().strip()
    assert preset in ("quick", "balanced", "full"), preset
    assert preset.capitalize() in note.inner_text()
    expect(panel.locator("#steps")).to_have_text("4")  # the person's own choice kept
    chat.shot("machine-preset-panel")
    panel.locator("#confirm").click()
