"""The machine's preset reaches the chat that made the first picture (issue #15), end to
end: the real app over Chainlit's socket.io, the real diffusers engine on the tiny SD1.5
pipeline on the CPU, which times one UNet step after that picture."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.app_process import AppProcess, ChatClient, app_env, chat_client
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.replies import SPEC
from tests.support.tiny_pipelines import TinyModels

pytestmark = pytest.mark.slow
NOTE = "This computer makes a full-quality picture in about"


@pytest.fixture(scope="module")
def app(
    ollama_server: FakeOllama, tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppProcess]:
    env = app_env(tmp_path_factory.mktemp("machine-app"), ollama_server, tiny_models,
                  EGAKI_DEVICE="cpu", EGAKI_MEASURE_MACHINE="1", EGAKI_CPU_RUNTIME="torch")
    with AppProcess(env) as proc:
        yield proc
    assert "Traceback" not in proc.log(), proc.log()


def panel_presets(client: ChatClient) -> list[Any]:
    """The preset each panel sent to this chat started on."""
    return [next(w.get("initial") for w in data if w["id"] == "preset")
            for event, data in client.events if event == "chat_settings"]


async def test_the_open_chats_on_auto_take_the_measured_preset_once_and_say_why(
    app: AppProcess, ollama: FakeOllama
) -> None:
    async with chat_client(app) as mine, chat_client(app) as picked:
        for client in (mine, picked):
            await client.wait_text("GO")  # the welcome
            await client.wait_for(lambda c: panel_presets(c) == ["auto"])
            await client.sio.emit("chat_settings_change", {"steps": "4", "sampler": "Euler"})
        await picked.sio.emit("chat_settings_change", {"preset": "quick"})  # their own
        await asyncio.sleep(0.5)
        ollama.enqueue(Reply(data=SPEC))
        await mine.send("GO")
        note = await mine.wait_text(NOTE, timeout=120)
        assert "Full" in note or "Balanced" in note or "Quick" in note
        shown = panel_presets(mine)
        assert len(shown) == 2 and shown[-1] in ("quick", "balanced", "full")
        assert any(e == "element" for e, _ in mine.events[:[
            i for i, (e, _) in enumerate(mine.events) if e == "chat_settings"][-1]])
        await asyncio.sleep(1.0)
        assert panel_presets(picked) == ["auto"] and not any(NOTE in t for t in picked.texts())
        assert sum(NOTE in t for t in mine.texts()) == 1  # once
