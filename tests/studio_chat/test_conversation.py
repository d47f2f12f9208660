"""A whole conversation against the wire-faked Ollama, with a recording fake UI."""

from __future__ import annotations

from langchain_core.tools import tool

from assistant.chat.conversation import MAX_MESSAGE_CHARS, Conversation
from assistant.chat.state import ChatState
from tests.support.backends import wire
from tests.support.fake_ollama import FakeModel, FakeOllama, Reply
from tests.support.recording_ui import RecordingUI
from tools.core.settings import Settings


@tool
def generate_image(prompt: str) -> str:
    """Make an image."""
    return f"made {prompt}"


def conv(settings: Settings, ollama: FakeOllama, lang: str = "en", llm_api: str = "ollama",
         **over: object) -> Conversation:
    """A chat on the fake server through ``llm_api`` (Ollama's API or the OpenAI ``/v1``)."""
    s, gateway, models = wire(settings, ollama, llm_api, **over)
    return Conversation(s, gateway, models, [generate_image], ChatState.start(lang))


async def test_start_greets_and_gets_ready(settings: Settings, ollama: FakeOllama) -> None:
    c, ui = conv(settings, ollama), RecordingUI()
    await c.start(ui)
    assert c.ready and "GO" in ui.said[0]


async def test_message_gets_streamed_answer_and_is_remembered(
    settings: Settings, ollama: FakeOllama, llm_api: str
) -> None:
    c, ui = conv(settings, ollama, llm_api=llm_api), RecordingUI()
    await c.start(ui)
    ollama.enqueue(Reply("Sure — what mood should the picture have?"))
    await c.on_message("a cat on a roof", ui)
    assert ui.streams == ["Sure — what mood should the picture have?"]
    body = ollama.last_chat()
    assert body["model"] == "qwen3-vl:8b" and body["stream"] is True
    assert [t["function"]["name"] for t in body["tools"]] == ["generate_image"]
    assert body["messages"][0]["role"] == "system"
    ollama.enqueue(Reply("Got it."))
    await c.on_message("cozy", ui)
    roles = [m["role"] for m in ollama.last_chat()["messages"]]
    assert roles == ["system", "user", "assistant", "user"]


async def test_japanese_user_gets_japanese_system_prompt_and_errors(
    settings: Settings, ollama: FakeOllama
) -> None:
    c, ui = conv(settings, ollama), RecordingUI()
    await c.start(ui)
    await c.on_message("ビーチバレーの写真を作りたい", ui)
    assert "Japanese" in ollama.last_chat()["messages"][0]["content"]
    ollama.stop()
    ollama.enqueue(Reply("x"))
    await c.on_message("もう一度", ui)
    assert "ollama serve" in ui.said[-1] and "接続できません" in ui.said[-1]


async def test_ollama_down_at_start_then_recovers_on_next_message(
    settings: Settings, ollama: FakeOllama
) -> None:
    ollama.stop()
    c, ui = conv(settings, ollama), RecordingUI()
    await c.start(ui)
    assert not c.ready
    assert "Can't reach Ollama" in ui.said[-1] and "ollama serve" in ui.said[-1]
    await c.on_message("hello?", ui)
    assert "Can't reach Ollama" in ui.said[-1]
    ollama.start()
    ollama.enqueue(Reply("I'm here now."))
    await c.on_message("hello again", ui)
    assert ui.streams[-1] == "I'm here now."


async def test_missing_model_is_pulled_with_progress_after_consent(
    settings: Settings, ollama: FakeOllama
) -> None:
    c, ui = conv(settings, ollama, chat_model="gemma3:4b"), RecordingUI(accept_pull=True)
    ollama.models.pop("gemma3:4b", None)
    await c.start(ui)
    assert ui.asked == ["gemma3:4b"]
    assert len(ui.progress) >= 3 and ui.progress[-1].status == "success"
    assert "`gemma3:4b` is ready." in ui.said
    assert c.ready


async def test_declined_pull_explains_how_to_get_model(
    settings: Settings, ollama: FakeOllama
) -> None:
    c, ui = conv(settings, ollama, chat_model="gemma3:4b"), RecordingUI(accept_pull=False)
    await c.start(ui)
    assert not c.ready and "ollama pull gemma3:4b" in ui.said[-1]
    assert not ollama.requests_to("/api/pull")


async def test_model_without_tools_chats_without_them_and_says_so(
    settings: Settings, ollama: FakeOllama, llm_api: str
) -> None:
    ollama.add_model(FakeModel("plain:1b", capabilities=["completion"]))
    c, ui = conv(settings, ollama, llm_api=llm_api, chat_model="plain:1b"), RecordingUI()
    await c.start(ui)
    assert any("can't call tools" in s for s in ui.said)
    await c.on_message("hi", ui)
    assert not ollama.last_chat().get("tools")


async def test_stream_cut_midway_is_reported_and_next_turn_works(
    settings: Settings, ollama: FakeOllama, llm_api: str
) -> None:
    c, ui = conv(settings, ollama, llm_api=llm_api), RecordingUI()
    await c.start(ui)
    ollama.enqueue(Reply("one two three four five", hangup_after=2), Reply("Back again."))
    await c.on_message("tell me", ui)
    assert "stopped answering" in ui.said[-1]
    await c.on_message("again", ui)
    assert ui.streams[-1] == "Back again."
    assert c.history[-1].content == "Back again."


async def test_empty_and_huge_messages_get_clear_answers(
    settings: Settings, ollama: FakeOllama
) -> None:
    c, ui = conv(settings, ollama), RecordingUI()
    await c.start(ui)
    before = len(ollama.chat_requests())
    await c.on_message("   ", ui)
    assert "empty" in ui.said[-1]
    await c.on_message("x" * (MAX_MESSAGE_CHARS + 1), ui)
    assert "under" in ui.said[-1]
    assert len(ollama.chat_requests()) == before


def test_title_is_the_persons_words_unless_they_say_little(
    settings: Settings, ollama: FakeOllama
) -> None:
    c = conv(settings, ollama)
    assert c.title("  a cozy   reading nook  ") == "a cozy reading nook"
    assert c.title("GO") == ""  # nothing to name the chat after yet
    assert c.title("x" * 60).endswith("…") and len(c.title("x" * 60)) == 40
