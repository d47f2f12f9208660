"""The fake Ollama's ``/v1`` answers Egaki's OpenAI-compatible backend as real Ollama does:
models list, capabilities via ``/api/show``, streaming, tool calls, JSON-schema output,
embeddings and Ollama's own error words."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool

from assistant.prompting.interview import InterviewReply
from tests.support.backends import wire
from tests.support.fake_ollama import FakeModel, FakeOllama, Reply
from tools.core.errors import ModelMissing, ToolsRefused
from tools.core.settings import Settings
from tools.llm.openai_gateway import OpenAICompatGateway
from tools.llm.structured import StructuredLLM


@tool
def generate_image(prompt: str) -> str:
    """Make an image."""
    return "ok"


@pytest.fixture
def gateway(settings: Settings, ollama: FakeOllama,
            fresh_openai_clients: None) -> OpenAICompatGateway:
    _, gw, _ = wire(settings, ollama, "openai")
    assert isinstance(gw, OpenAICompatGateway)
    return gw


async def test_models_capabilities_and_embeddings(
    gateway: OpenAICompatGateway, ollama: FakeOllama
) -> None:
    assert "qwen3-vl:8b" in await gateway.installed()
    status = await gateway.status("qwen3-vl:8b")
    assert status.tools and status.vision  # from Ollama's /api/show
    vectors = await gateway.embed(["a cat", "a dog"], "nomic-embed-text:latest")
    assert len(vectors) == 2 and len(vectors[0]) == 64 and vectors[0] != vectors[1]


async def test_streamed_tool_call_and_json_schema_reach_the_wire(
    gateway: OpenAICompatGateway, ollama: FakeOllama
) -> None:
    chat = gateway.chat_model("qwen3-vl:8b")
    ollama.enqueue(Reply(tool_calls=[{"name": "generate_image", "arguments": {"prompt": "fox"}}]))
    reply = None
    async for chunk in chat.bind_tools([generate_image]).astream([HumanMessage("a fox")]):
        reply = chunk if reply is None else reply + chunk
    assert reply is not None and reply.tool_calls[0]["args"] == {"prompt": "fox"}
    assert ollama.last_chat()["tools"][0]["function"]["name"] == "generate_image"
    ollama.enqueue(Reply(data={"slots": {"subject": "fox"}, "questions": [], "ready": True}))
    answer = await StructuredLLM(chat).ask(InterviewReply, [HumanMessage("a fox")],
                                           purpose="interview")
    body = ollama.last_chat()
    assert answer.ready and body["format"]["type"] == "object"
    assert body["_openai"]["response_format"]["type"] == "json_schema"
    assert 64 <= body["options"]["num_predict"] < 1024  # max_tokens from the schema


@pytest.mark.ollama(models=[FakeModel("gemma3:1b", ["completion"])])
async def test_ollama_error_words_become_egaki_errors(
    gateway: OpenAICompatGateway, ollama: FakeOllama
) -> None:
    with pytest.raises(ToolsRefused):
        await gateway.chat_model("gemma3:1b").bind_tools([generate_image]).ainvoke(
            [HumanMessage("draw")])
    with pytest.raises(ModelMissing):
        await gateway.chat_model("nope:1b").ainvoke([HumanMessage("hi")])
