"""The Ollama chat model at the wire: a quiet retry on a runner 500, Egaki's errors, a
schema-sized ``num_predict`` and an early stop on repetition loops."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool

from tests.support.fake_ollama import FakeModel, FakeOllama, Reply
from tools.core.errors import ChatServerError, ToolsRefused
from tools.core.settings import Settings
from tools.llm.chat_models import chat_model_factory
from tools.llm.schema_bounds import token_budget
from tools.llm.structured import StructuredLLM, cap_schema, inline_schema

CRASH = "llama runner process has terminated: exit status 2"


@tool
def generate_image(prompt: str) -> str:
    """Make an image."""
    return "ok"


def chat(settings: Settings, ollama: FakeOllama, model: str = "qwen3-vl:8b"):
    return chat_model_factory(settings.model_copy(update={"ollama_host": ollama.url}))(model)


async def test_one_runner_crash_is_retried_quietly(settings: Settings, ollama: FakeOllama) -> None:
    ollama.enqueue(Reply(error=CRASH, status=500), Reply("Hello again."))
    reply = await chat(settings, ollama).ainvoke([HumanMessage("hi")])
    assert reply.content == "Hello again." and len(ollama.chat_requests()) == 2


async def test_streamed_reply_is_retried_too(settings: Settings, ollama: FakeOllama) -> None:
    ollama.enqueue(Reply(error=CRASH, status=500), Reply("Streamed after all."))
    parts = [c.content async for c in chat(settings, ollama).astream([HumanMessage("hi")])]
    assert "".join(str(p) for p in parts) == "Streamed after all."


async def test_two_crashes_say_what_the_server_said(settings: Settings, ollama: FakeOllama) -> None:
    ollama.enqueue(Reply(error=CRASH, status=500), Reply(error=CRASH, status=500))
    with pytest.raises(ChatServerError) as info:
        await chat(settings, ollama).ainvoke([HumanMessage("hi")])
    assert "exit status 2" in str(info.value) and "500" in str(info.value)
    assert "拒否" in info.value.localized("ja")
    assert len(ollama.chat_requests()) == 2


@pytest.mark.ollama(models=[FakeModel("gemma3:4b", ["completion", "vision"])])
async def test_a_model_without_tools_raises_tools_refused(
    settings: Settings, ollama: FakeOllama
) -> None:
    model = chat(settings, ollama, "gemma3:4b").bind_tools([generate_image])
    with pytest.raises(ToolsRefused) as info:
        await model.ainvoke([HumanMessage("draw a cat")])
    assert "gemma3:4b" in str(info.value)
    assert len(ollama.chat_requests()) == 1  # a 400 is not retried


async def test_structured_call_gets_num_predict_from_the_schema(
    settings: Settings, ollama: FakeOllama
) -> None:
    from assistant.prompting.interview import InterviewReply

    ollama.enqueue(Reply(data={"slots": {"subject": "cat"}, "questions": [], "ready": True}))
    await StructuredLLM(chat(settings, ollama)).ask(
        InterviewReply, [HumanMessage("a cat")], purpose="interview")
    body = ollama.last_chat()
    expected = token_budget(cap_schema(inline_schema(InterviewReply), 300, 8))
    assert body["options"]["num_predict"] == expected < 1024


async def test_a_repetition_loop_is_not_read_to_the_token_limit(
    settings: Settings, ollama: FakeOllama
) -> None:
    loop = '{"subject": "' + "relief-" * 400
    ollama.enqueue(Reply(loop, done_reason="length"))
    reply = await chat(settings, ollama).ainvoke([HumanMessage("a cat")])
    assert len(str(reply.content)) < 200 < len(loop)
