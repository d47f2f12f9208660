"""A model without tool support (Ollama: HTTP 400 "does not support tools") still reaches
the image: the studio works as usual and free-chat edits go through tool calls written as
JSON text; a refusal is detected once per model and remembered for every chat."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.chat.conversation import Conversation
from assistant.chat.state import ChatState
from assistant.chat.tooling.image_tool import make_generate_image_tool
from assistant.chat.tooling.tool_mode import ToolSupport
from assistant.studio.runner import ImageRunner
from tests.support.backends import wire
from tests.support.fake_ollama import FakeModel, FakeOllama, Reply
from tests.support.recording_ui import RecordingUI
from tests.support.replies import SPEC
from tools.core.settings import Settings
from tools.engines.fake import FakeEngine

PLAIN = FakeModel("gemma3:1b", ["completion"])


def conversation(settings: Settings, ollama: FakeOllama, engine: FakeEngine, tmp_path: Path,
                 llm_api: str, model: str, lang: str = "en",
                 support: ToolSupport | None = None) -> Conversation:
    s, gateway, models = wire(settings, ollama, llm_api, chat_model=model)
    runner = ImageRunner(engine, output_dir=tmp_path / "images")
    return Conversation(s, gateway, models, [make_generate_image_tool(runner)],
                        ChatState.start(lang), runner=runner.run, tool_support=support)


def call_as_text(prompt: str) -> Reply:
    return Reply(json.dumps({"name": "generate_image", "arguments": {"prompt": prompt}}))


@pytest.mark.parametrize(("edit", "lang"), [("make it night", "en"), ("夜にして", "ja")])
async def test_free_chat_edit_reaches_the_image_without_native_tools(
    settings: Settings, ollama: FakeOllama, tmp_path: Path, llm_api: str, edit: str, lang: str
) -> None:
    ollama.add_model(PLAIN)
    engine, ui = FakeEngine(), RecordingUI()
    c = conversation(settings, ollama, engine, tmp_path, llm_api, PLAIN.name, lang)
    await c.start(ui)
    ollama.enqueue(Reply(data=SPEC))
    await c.on_message("GO", ui)  # the studio: structured output, no tools needed
    assert len(engine.calls) == 1
    ollama.enqueue(call_as_text("two women playing beach volleyball, night, moonlight"),
                   Reply("Here it is at night." if lang == "en" else "夜にしました。"))
    await c.on_message(edit, ui)
    first = ollama.chat_requests()[-2]
    assert not first.get("tools")  # never sent: the server would answer 400
    assert "cannot call tools directly" in first["messages"][0]["content"]
    assert len(engine.calls) == 2 and "night" in engine.calls[1].request.prompt
    assert not any('"generate_image"' in s for s in ui.streams)  # the JSON is never shown


async def test_a_refusal_is_detected_once_and_remembered_for_every_chat(
    settings: Settings, ollama: FakeOllama, tmp_path: Path, llm_api: str
) -> None:
    # the server lists tools for the model, but its runner refuses them (a template without)
    ollama.add_model(FakeModel("liar:1b", ["completion", "tools"]))
    engine, ui, support = FakeEngine(), RecordingUI(), ToolSupport()
    c = conversation(settings, ollama, engine, tmp_path, llm_api, "liar:1b", support=support)
    await c.start(ui)
    ollama.enqueue(Reply(data=SPEC))
    await c.on_message("GO", ui)
    ollama.models["liar:1b"].capabilities.remove("tools")  # /api/chat now answers 400
    ollama.clear()
    ollama.enqueue(call_as_text("a lighthouse at night"), Reply("Done."))
    await c.on_message("now a lighthouse at night, please", ui)
    assert any("refused tool calls" in s for s in ui.said)
    bodies = ollama.chat_requests()
    assert bodies[0].get("tools") and not bodies[1].get("tools")
    assert len(engine.calls) == 2 and "lighthouse" in engine.calls[1].request.prompt
    other = conversation(settings, ollama, engine, tmp_path, llm_api, "liar:1b",
                         support=support)
    await other.start(ui)
    ollama.enqueue(Reply(data=SPEC))
    await other.on_message("GO", ui)
    ollama.clear()
    ollama.enqueue(Reply("Hello!"))
    await other.on_message("hello there, how are you", ui)
    assert [bool(b.get("tools")) for b in ollama.chat_requests()] == [False]  # remembered
