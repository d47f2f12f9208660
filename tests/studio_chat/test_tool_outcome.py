"""When the image tool rejects the model's arguments, the chat shows what the tool really
did (a tool step with its outcome) and says no image was made: the model's "I generated the
image" never stands alone."""

from __future__ import annotations

from pathlib import Path

from assistant.chat.conversation import Conversation
from assistant.chat.state import ChatState
from assistant.chat.tooling.image_tool import make_generate_image_tool
from assistant.studio.runner import ImageRunner
from tests.support.backends import wire
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.recording_ui import RecordingUI
from tests.support.replies import SPEC
from tools.core.settings import Settings
from tools.engines.fake import FakeEngine


async def chat_after_a_picture(settings: Settings, ollama: FakeOllama, tmp_path: Path,
                               llm_api: str, lang: str = "en"
                               ) -> tuple[Conversation, FakeEngine, RecordingUI]:
    s, gateway, models = wire(settings, ollama, llm_api)
    engine, ui = FakeEngine(), RecordingUI()
    runner = ImageRunner(engine, output_dir=tmp_path / "images")
    c = Conversation(s, gateway, models, [make_generate_image_tool(runner)],
                     ChatState.start(lang), runner=runner.run)
    await c.start(ui)
    ollama.enqueue(Reply(data=SPEC))
    await c.on_message("GO", ui)
    engine.calls.clear()
    return c, engine, ui


def bad_call(width: int) -> Reply:
    return Reply(tool_calls=[{"name": "generate_image",
                              "arguments": {"prompt": "a beach at night", "width": width}}])


async def test_rejected_arguments_show_a_failed_step_and_no_claim_of_an_image(
    settings: Settings, ollama: FakeOllama, tmp_path: Path, llm_api: str
) -> None:
    c, engine, ui = await chat_after_a_picture(settings, ollama, tmp_path, llm_api)
    ollama.enqueue(bad_call(500), Reply("I generated the image for you!"))
    await c.on_message("make it a night scene please", ui)
    assert not engine.calls
    [(name, args, outcome, ok)] = ui.steps
    assert name == "generate_image" and not ok and "500" in args
    assert "multiple of 8" in outcome
    assert ui.streams[-1] == "I generated the image for you!"
    assert "No image was made" in ui.said[-1] and "multiple of 8" in ui.said[-1]


async def test_japanese_chat_gets_the_note_in_japanese(
    settings: Settings, ollama: FakeOllama, tmp_path: Path, llm_api: str
) -> None:
    c, engine, ui = await chat_after_a_picture(settings, ollama, tmp_path, llm_api, "ja")
    ollama.enqueue(bad_call(10_000), Reply("夜の画像を作りました！"))
    await c.on_message("夜にして", ui)
    assert not engine.calls and "画像を作成できませんでした" in ui.said[-1]


async def test_a_drawn_image_is_a_done_step_and_no_note(
    settings: Settings, ollama: FakeOllama, tmp_path: Path, llm_api: str
) -> None:
    c, engine, ui = await chat_after_a_picture(settings, ollama, tmp_path, llm_api)
    ollama.enqueue(bad_call(512), Reply("Here it is at night."))
    said = len(ui.said)
    await c.on_message("make it a night scene please", ui)
    assert len(engine.calls) == 1
    [(_, _, outcome, ok)] = ui.steps
    assert ok and outcome.startswith("Generated 1 image")
    assert len(ui.said) == said  # no note
