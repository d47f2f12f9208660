"""Ollama wiring against the wire-compatible fake: capabilities, pull progress, outages."""

from __future__ import annotations

import pytest
from ollama import AsyncClient

from tests.support.fake_ollama import FakeModel, FakeOllama
from tools.core.errors import ModelMissing, OllamaUnavailable
from tools.core.settings import Settings
from tools.llm.ollama_gateway import OllamaGateway, PullProgress


def gw(settings: Settings, ollama: FakeOllama) -> OllamaGateway:
    return OllamaGateway(settings.model_copy(update={"ollama_host": ollama.url}))


async def test_status_reports_tools_and_vision(settings: Settings, ollama: FakeOllama) -> None:
    ollama.add_model(FakeModel("tiny:1b", capabilities=["completion"]))
    status = await gw(settings, ollama).status("qwen3-vl:8b")
    assert status.tools and status.vision
    plain = await gw(settings, ollama).status("tiny:1b")
    assert not plain.tools and not plain.vision


async def test_missing_model_raises_model_missing_with_pull_hint(
    settings: Settings, ollama: FakeOllama
) -> None:
    with pytest.raises(ModelMissing) as err:
        await gw(settings, ollama).status("gemma3:4b")
    assert err.value.model == "gemma3:4b"
    assert "ollama pull gemma3:4b" in err.value.message
    assert "ollama pull gemma3:4b" in err.value.localized("ja")


async def test_pull_reports_growing_progress_then_model_is_installed(
    settings: Settings, ollama: FakeOllama
) -> None:
    seen: list[PullProgress] = []

    async def on_progress(p: PullProgress) -> None:
        seen.append(p)

    g = gw(settings, ollama)
    await g.pull("gemma3:4b", on_progress)
    fractions = [p.fraction for p in seen if p.total]
    assert len(fractions) >= 3
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert seen[-1].status == "success"
    assert (await g.status("gemma3:4b")).name == "gemma3:4b"


async def test_pull_of_unknown_name_is_a_clear_error(
    settings: Settings, ollama: FakeOllama
) -> None:
    with pytest.raises(ModelMissing, match="does not exist"):
        await gw(settings, ollama).pull("no-such-model:1b")


async def test_server_down_is_actionable_then_recovers(
    settings: Settings, ollama: FakeOllama
) -> None:
    g = gw(settings, ollama)
    ollama.stop()
    for call in (g.installed(), g.status("qwen3-vl:8b"), g.pull("gemma3:4b")):
        with pytest.raises(OllamaUnavailable) as err:
            await call
        assert "ollama serve" in err.value.message and ollama.url in err.value.message
        assert "ollama serve" in err.value.localized("ja")
    ollama.start()
    assert "qwen3-vl:8b" in await g.installed()


async def test_unload_all_sends_keep_alive_zero(settings: Settings, ollama: FakeOllama) -> None:
    g = gw(settings, ollama)
    await AsyncClient(host=ollama.url).chat(model="qwen3-vl:8b", messages=[])  # load it
    names = await g.unload_all()
    assert names == ["qwen3-vl:8b"]
    assert ollama.loaded == set()
    unloads = ollama.requests_to("/api/generate")
    assert unloads and unloads[-1]["keep_alive"] == 0
    ollama.stop()
    assert await g.unload_all() == []  # down: logged, not raised
