"""The OpenAI-compatible backend against a real llama.cpp server running SmolLM2-135M.

Assertions are about plumbing (shapes, errors, limits), never about the tiny model's taste.
"""

from __future__ import annotations

import base64
import json
import socket
import time

import pytest
from langchain_core.messages import HumanMessage
from pydantic import BaseModel, Field

from tests.realmodel.conftest import ALIAS
from tests.realmodel.llm_server import LlamaServer, smollm2_gguf
from tools.core.errors import (
    CapabilityMissing,
    ChatServerUnavailable,
    ContextTooLong,
    ModelMissing,
)
from tools.core.settings import Settings
from tools.ledger.embeddings import OpenAIEmbedder, make_embedder
from tools.llm.backend import make_chat_model, make_gateway
from tools.llm.openai_gateway import OpenAICompatGateway
from tools.llm.structured import inline_schema

# langchain-openai caches one async HTTP client per (base_url, timeout) per process; its
# pooled connections belong to the loop that opened them, so this tier shares one loop.
pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def _settings(url: str, **extra: object) -> Settings:
    return Settings(llm_api="openai", openai_base_url=url, chat_model=ALIAS,  # type: ignore[arg-type]
                    ollama_timeout_s=60, **extra)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def settings(llama_server: LlamaServer) -> Settings:
    return _settings(llama_server.base_url)


@pytest.fixture
def gateway(settings: Settings) -> OpenAICompatGateway:
    gw = make_gateway(settings)
    assert isinstance(gw, OpenAICompatGateway)
    return gw


class Photo(BaseModel):
    subject: str = Field(json_schema_extra={"maxLength": 60})
    tags: list[str] = Field(default_factory=list, json_schema_extra={"maxItems": 3})


# --- discovery ------------------------------------------------------------------------------
async def test_lists_and_resolves_models(gateway: OpenAICompatGateway) -> None:
    assert await gateway.installed() == [ALIAS]
    assert await gateway.resolve("") == ALIAS
    assert await gateway.resolve("SmolLM2-135M") == ALIAS
    with pytest.raises(ModelMissing) as info:
        await gateway.resolve("qwen3-vl:8b")
    assert ALIAS in info.value.message and "qwen3-vl:8b" in info.value.localized("ja")


async def test_capabilities_come_from_the_server(gateway: OpenAICompatGateway) -> None:
    status = await gateway.status(ALIAS)
    assert not status.tools and gateway.sources["tools"] == "/props chat_template_caps"
    assert not status.vision and gateway.sources["vision"] == "/props modalities"
    assert "json_schema" in status.capabilities
    assert gateway.context_length == 4096


async def test_declared_capabilities_win(llama_server: LlamaServer) -> None:
    gw = make_gateway(_settings(llama_server.base_url, llm_tools=True))
    assert (await gw.status(ALIAS)).tools


# --- chat through ChatOpenAI -------------------------------------------------------------------
async def test_chat_streams_and_reports_timings(settings: Settings) -> None:
    chat = make_chat_model(settings, ALIAS, temperature=0, max_tokens=16, seed=1)
    t0 = time.perf_counter()
    first: float | None = None
    chunks = []
    async for chunk in chat.astream([HumanMessage("Say hello.")]):
        if chunk.content and first is None:
            first = time.perf_counter() - t0
        chunks.append(chunk)
    total = time.perf_counter() - t0
    assert sum(1 for c in chunks if c.content) > 1  # real streaming, token by token
    usage = next(c.usage_metadata for c in reversed(chunks) if c.usage_metadata)
    assert 0 < usage["output_tokens"] <= 16
    print(f"\nSmolLM2-135M: TTFT {first:.3f} s, {usage['output_tokens']} tokens in {total:.2f} s "
          f"({usage['output_tokens'] / total:.1f} tok/s incl. prompt)")


async def test_ollama_style_format_binding_gives_bounded_schema_json(settings: Settings) -> None:
    chat = make_chat_model(settings, ALIAS, temperature=0, seed=1)
    bound = chat.bind(format=inline_schema(Photo))  # what StructuredLLM does for ChatOllama
    reply = await bound.ainvoke([HumanMessage("A photo of two women playing beach volleyball.")])
    photo = Photo.model_validate(json.loads(str(reply.content)))
    assert len(photo.subject) <= 60 and len(photo.tags) <= 3  # the grammar enforced both


# --- errors ------------------------------------------------------------------------------------
async def test_server_down_is_a_clear_localised_error() -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    settings = _settings(url)
    gw = make_gateway(settings)
    with pytest.raises(ChatServerUnavailable) as info:
        await gw.installed()
    assert url in info.value.message and "接続できません" in info.value.localized("ja")
    with pytest.raises(ChatServerUnavailable):
        await make_chat_model(settings, "m").ainvoke("hi")


async def test_context_too_long_names_both_numbers(settings: Settings) -> None:
    chat = make_chat_model(settings, ALIAS, max_tokens=4)
    with pytest.raises(ContextTooLong) as info:
        await chat.ainvoke("word " * 5000)
    assert "4096" in info.value.message and "4096" in info.value.localized("ja")


async def test_an_image_to_a_text_model_is_a_capability_error(settings: Settings) -> None:
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    # the bare-string image_url shape Egaki's vision code uses with ChatOllama
    message = HumanMessage(content=[{"type": "text", "text": "What is this?"},
                                    {"type": "image_url", "image_url": url}])
    with pytest.raises(CapabilityMissing):
        await make_chat_model(settings, ALIAS, max_tokens=4).ainvoke([message])


# --- embeddings ----------------------------------------------------------------------------------
async def test_ledger_embeddings_through_v1_embeddings(llama_server: LlamaServer) -> None:
    embedder = make_embedder(_settings(llama_server.base_url, embedder="openai",
                                       embed_model=ALIAS))
    assert isinstance(embedder, OpenAIEmbedder)
    vectors = embedder.embed_documents(["a cat on a sofa", "ソファの猫"])
    assert len(vectors) == 2 and len(vectors[0]) == len(embedder.embed_query("cat")) > 0


async def test_no_embeddings_then_server_down() -> None:
    path = smollm2_gguf()
    assert path is not None
    with LlamaServer(path, alias="plain") as srv:  # a second, short-lived server
        settings = _settings(srv.base_url, embedder="openai", embed_model="plain")
        with pytest.raises(CapabilityMissing):
            make_embedder(settings).embed_query("x")
        gw = make_gateway(settings)
        assert isinstance(gw, OpenAICompatGateway)
        with pytest.raises(CapabilityMissing):
            await gw.embed(["x"])
        srv.stop()
        with pytest.raises(ChatServerUnavailable):
            await gw.installed()
