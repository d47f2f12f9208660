"""A turn the model fails never loses the person's words, speaks their language, and
"GO" after a failure still reaches the studio (issue 18, seen with SmolLM2-135M)."""

from __future__ import annotations

from pathlib import Path

from assistant.chat.conversation import Conversation
from assistant.chat.state import ChatState
from assistant.studio.runner import ImageRunner
from tests.support.backends import wire
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.recording_ui import RecordingUI
from tests.support.replies import SPEC
from tools.core.settings import Settings
from tools.engines.fake import FakeEngine

CRASH = Reply(error="llama runner process has terminated: exit status 2", status=500)
# the interview reply rambling inside one JSON string until the token limit
CUT = Reply('{"slots": {"subject": "two women ' + "relief-" * 300, done_reason="length")


def conversation(settings: Settings, ollama: FakeOllama, tmp_path: Path, llm_api: str,
                 lang: str = "ja") -> tuple[Conversation, FakeEngine]:
    s, gateway, models = wire(settings, ollama, llm_api)
    engine = FakeEngine()
    runner = ImageRunner(engine, output_dir=tmp_path / "images")
    c = Conversation(s, gateway, models, [], ChatState.start(lang), runner=runner.run)
    return c, engine


async def test_every_message_stays_in_the_record_whatever_the_model_does(
    settings: Settings, ollama: FakeOllama, tmp_path: Path, llm_api: str
) -> None:
    c, engine = conversation(settings, ollama, tmp_path, llm_api, lang="ja")  # a Japanese browser
    ui = RecordingUI()
    await c.start(ui)
    ollama.enqueue(CUT, CUT)  # cut at the token limit twice
    await c.on_message("I want a photo of two women playing beach volleyball", ui)
    assert c.lang == "en"
    assert "?" in ui.said[-1] and "GO" in ui.said[-1]  # Egaki's own questions, in English
    ollama.enqueue(CRASH, CRASH)  # the runner crashes, and again on the quiet retry
    await c.on_message("bright and sunny, afternoon, on the beach", ui)
    assert "refused the request (500)" in ui.said[-1]  # English, as the person writes
    words = c.state.studio.interview.user_words
    assert words == ["I want a photo of two women playing beach volleyball",
                     "bright and sunny, afternoon, on the beach"]
    ollama.enqueue(Reply(data={**SPEC, "subject": "two women playing beach volleyball"}))
    await c.on_message("GO", ui)
    card = ui.shown[-2][0]
    assert "two women playing beach volleyball" in card.split("Your words")[-1]
    assert "bright and sunny" in card.split("Your words")[-1]
    assert len(engine.calls) == 1


async def test_go_after_a_failed_spec_step_reaches_the_studio_not_the_free_chat(
    settings: Settings, ollama: FakeOllama, tmp_path: Path, llm_api: str
) -> None:
    c, engine = conversation(settings, ollama, tmp_path, llm_api)
    ui = RecordingUI()
    await c.start(ui)
    ollama.enqueue(CRASH, CRASH)
    await c.on_message("夕暮れの海辺を歩く女の子をおまかせで", ui)  # not a skip: interview
    ollama.enqueue(CRASH, CRASH)
    await c.on_message("おまかせ", ui)  # the spec step fails twice (server error)
    assert "拒否" in ui.said[-1] and not engine.calls
    ollama.enqueue(Reply(data=SPEC))
    await c.on_message("おまかせ", ui)
    assert not ollama.last_chat().get("tools") and "format" in ollama.last_chat()
    assert len(engine.calls) == 1
    assert ui.streams == []  # nothing from the free chat
