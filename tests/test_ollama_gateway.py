"""Ollama wiring against the wire-compatible fake: capabilities, pull progress, outages."""

from __future__ import annotations

import pytest
from ollama import AsyncClient

from tests.fake_ollama import FakeModel, FakeOllama
from tools.core.errors import ModelMissing, OllamaUnavailable
from tools.core.settings import Settings
from tools.llm.ollama_gateway import OllamaGateway, PullProgress


@pytest.fixture
def srv():
    with FakeOllama() as server:
        yield server


def gw(settings: Settings, srv: FakeOllama) -> OllamaGateway:
    return OllamaGateway(settings.model_copy(update={"ollama_host": srv.url}))


async def test_status_reports_tools_and_vision(settings: Settings, srv: FakeOllama) -> None:
    srv.add_model(FakeModel("tiny:1b", capabilities=["completion"]))
    status = await gw(settings, srv).status("qwen3-vl:8b")
    assert status.tools and status.vision
    plain = await gw(settings, srv).status("tiny:1b")
    assert not plain.tools and not plain.vision


async def test_missing_model_raises_model_missing_with_pull_hint(
    settings: Settings, srv: FakeOllama
) -> None:
    with pytest.raises(ModelMissing) as err:
        await gw(settings, srv).status("gemma3:4b")
    assert err.value.model == "gemma3:4b"
    assert "ollama pull gemma3:4b" in err.value.message
    assert "ollama pull gemma3:4b" in err.value.localized("ja")


async def test_pull_reports_growing_progress_then_model_is_installed(
    settings: Settings, srv: FakeOllama
) -> None:
    seen: list[PullProgress] = []

    async def on_progress(p: PullProgress) -> None:
        seen.append(p)

    g = gw(settings, srv)
    await g.pull("gemma3:4b", on_progress)
    fractions = [p.fraction for p in seen if p.total]
    assert len(fractions) >= 3
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert seen[-1].status == "success"
    assert (await g.status("gemma3:4b")).name == "gemma3:4b"


async def test_pull_of_unknown_name_is_a_clear_error(settings: Settings, srv: FakeOllama) -> None:
    with pytest.raises(ModelMissing, match="does not exist"):
        await gw(settings, srv).pull("no-such-model:1b")


async def test_server_down_is_actionable_then_recovers(settings: Settings, srv: FakeOllama) -> None:
    g = gw(settings, srv)
    srv.stop()
    for call in (g.installed(), g.status("qwen3-vl:8b"), g.pull("gemma3:4b")):
        with pytest.raises(OllamaUnavailable) as err:
            await call
        assert "ollama serve" in err.value.message and srv.url in err.value.message
        assert "ollama serve" in err.value.localized("ja")
    srv.start()
    assert "qwen3-vl:8b" in await g.installed()


async def test_unload_all_sends_keep_alive_zero(settings: Settings, srv: FakeOllama) -> None:
    g = gw(settings, srv)
    await AsyncClient(host=srv.url).chat(model="qwen3-vl:8b", messages=[])  # load it
    names = await g.unload_all()
    assert names == ["qwen3-vl:8b"]
    assert srv.loaded == set()
    unloads = srv.requests_to("/api/generate")
    assert unloads and unloads[-1]["keep_alive"] == 0
    srv.stop()
    assert await g.unload_all() == []  # down: logged, not raised
