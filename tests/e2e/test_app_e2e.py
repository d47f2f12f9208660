"""The real app (``egaki run``) driven over Chainlit's socket.io, against the fake Ollama.

The tests of LLM behaviour run on both backends (``app`` is parametrised: Ollama's API, and
the OpenAI-compatible ``/v1`` the same fake serves); the Ollama-only ones (pulls, the
"ollama serve" hint) on Ollama's API. One app per backend for the module."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.app_process import AppProcess, app_env, chat_client
from tests.support.backends import LLM_APIS
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.replies import INTERVIEW_JA, SPEC

pytestmark = [pytest.mark.slow, pytest.mark.ollama(pull_delay=0.05)]


OLLAMA_ONLY = pytest.mark.parametrize("app", ["ollama"], indirect=True)
BOTH = pytest.mark.parametrize("app", LLM_APIS, indirect=True)


@pytest.fixture(scope="module")
def app(
    ollama_server: FakeOllama, tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[AppProcess]:
    api = getattr(request, "param", "ollama")
    extra = {"EGAKI_LLM_API": "openai", "EGAKI_OPENAI_BASE_URL": f"{ollama_server.url}/v1"} \
        if api == "openai" else {}
    env = app_env(tmp_path_factory.mktemp(f"appdata-{api}"), ollama_server, **extra)
    with AppProcess(env) as proc:
        yield proc


@OLLAMA_ONLY
async def test_serves_http_200_on_loopback(app: AppProcess) -> None:
    assert app.url.startswith("http://127.0.0.1:")
    resp = httpx.get(app.url)
    assert resp.status_code == 200 and "<html" in resp.text.lower()
    print(f"app started in {app.started_in_s:.1f} s")


@BOTH
async def test_japanese_request_question_go_prompt_card_and_inline_image(
    app: AppProcess, ollama: FakeOllama
) -> None:
    async with chat_client(app, language="ja-JP") as client:
        await client.wait_text("おまかせ")  # Japanese welcome
        ollama.enqueue(Reply(data=INTERVIEW_JA))
        await client.send("ビーチバレーの写真を作りたい")
        await client.wait_text("時間帯や光はどうしますか？")
        assert "format" in ollama.last_chat()  # structured output, not forced tools
        ollama.enqueue(Reply(data=SPEC))
        await client.send("GO")
        card = await client.wait_text("(two women:1.2) playing beach volleyball", timeout=30)
        assert "sunny beach" in card and "extra people" in card  # English prompt + negative
        assert "bad anatomy" in card or "extra fingers" in card  # thick preset negative
        await client.wait_for(lambda c: c.count("element") >= 1, timeout=30)
        element = next(d for e, d in client.events if e == "element")
        assert element["type"] == "image" and element["name"].startswith("seed-")
        seed = int(element["name"].removeprefix("seed-"))
        caption = await client.wait_text(f"**シード** {seed}")  # the caption speaks Japanese too
        assert "512×512" in caption and "20 ステップ" in caption
        pngs = sorted((app.data_dir / "images").glob("*.png"))
        from tools.infotext.png import read_png_parameters

        assert any(f"Seed: {seed}," in (read_png_parameters(p) or "") for p in pngs)
        await client.wait_for(lambda c: any("バリエーション" in a["label"] for a in c.actions))


@BOTH
async def test_free_chat_after_a_picture_is_streamed(app: AppProcess, ollama: FakeOllama) -> None:
    async with chat_client(app) as client:
        await client.wait_text("GO")  # welcome
        ollama.enqueue(Reply(data=SPEC))
        await client.send("GO")  # skip the interview entirely: straight to the picture
        await client.wait_for(lambda c: c.count("element") >= 1, timeout=30)
        ollama.enqueue(Reply("Glad you like it! Want a sunset version?", delay=0.01))
        await client.send("nice, thanks")
        text = await client.wait_text("sunset version?")
        assert text == "Glad you like it! Want a sunset version?"
        assert client.count("stream_token") >= 5
        body = ollama.last_chat()
        assert body["messages"][-1]["content"] == "nice, thanks"
        assert "(two women:1.2) playing beach volleyball" in body["messages"][0]["content"]


@OLLAMA_ONLY
async def test_ollama_absent_gives_actionable_error_then_recovers(
    app: AppProcess, ollama: FakeOllama
) -> None:
    ollama.stop()
    async with chat_client(app, language="ja-JP") as client:
        await client.wait_text("ollama serve")
        await client.send("猫の絵を描いて")
        await client.wait_for(
            lambda c: sum("ollama serve" in t for t in c.texts()) >= 2, timeout=20
        )
        assert any("接続できません" in t for t in client.texts())
        assert "Traceback" not in "".join(client.texts())
        ollama.start()
        ollama.enqueue(Reply("はい、どんな雰囲気にしますか？"))
        await client.send("もう一度")
        await client.wait_text("どんな雰囲気")


@OLLAMA_ONLY
async def test_missing_model_offers_pull_with_live_progress(
    app: AppProcess, ollama: FakeOllama
) -> None:
    ollama.remove_model("qwen3-vl:8b")

    def pull(spec: dict[str, Any], actions: list[dict[str, Any]]) -> dict[str, Any]:
        return next(a for a in actions if a["name"] == "pull")

    async with chat_client(app, answer_ask=pull) as client:
        await client.wait_text("`qwen3-vl:8b` is ready.", timeout=30)
        updates = [d for e, d in client.events if e == "update_message" and "▰" in d["output"]]
        assert len(updates) >= 2
        assert [body["model"] for body in ollama.requests_to("/api/pull")] == ["qwen3-vl:8b"]
        assert "qwen3-vl:8b" in ollama.models  # installed by that pull


@OLLAMA_ONLY
async def test_app_log_has_no_outbound_or_traceback(
    app: AppProcess, ollama: FakeOllama
) -> None:
    async with chat_client(app) as client:
        await client.wait_text("GO")  # the welcome asked Ollama about the model
    log = app.log()
    assert "Traceback" not in log, log
    assert f"Egaki is starting on http://127.0.0.1:{app.port}" in log
    # httpx logs every request the app makes: each went to the (fake) Ollama.
    requested = re.findall(r"HTTP Request: [A-Z]+ (\S+)", log)
    assert f"{ollama.url}/api/show" in requested
    assert [url for url in requested if not url.startswith(ollama.url + "/")] == []


async def test_thread_resumes_with_its_images_after_restart(
    ollama: FakeOllama, tmp_path: Path
) -> None:
    env = app_env(tmp_path / "data", ollama)
    with AppProcess(env) as first:
        async with chat_client(first) as client:
            await client.wait_text("GO")
            ollama.enqueue(Reply(data=SPEC))
            await client.send("GO")
            await client.wait_for(lambda c: c.count("element") >= 1, timeout=30)
            await client.wait_text("What next?")
            thread_id = next(d["thread_id"] for e, d in client.events if e == "first_interaction")
            cookies = client.cookies
    with AppProcess(env, port=first.port) as second:
        async with chat_client(second, thread_id=thread_id, cookies=cookies) as resumed:
            await resumed.wait_for(lambda c: c.count("resume_thread") >= 1, timeout=30)
            thread = next(d for e, d in resumed.events if e == "resume_thread")
            [image] = [el for el in thread.get("elements") or [] if el.get("type") == "image"]
            resp = httpx.get(second.url + image["url"], cookies=cookies)
            [drawn] = (tmp_path / "data" / "images").glob("*.png")
            assert resp.status_code == 200 and resp.content == drawn.read_bytes()
            await resumed.wait_text("What next?")  # the studio picks up where it stopped
            assert any(a["name"] == "egaki" for a in resumed.actions)
            ollama.enqueue(Reply("Still here — and I remember the lighthouse."))
            await resumed.send("do you remember?")
            await resumed.wait_text("Still here")
            body = ollama.last_chat()
            assert "(two women:1.2) playing beach volleyball" in body["messages"][0]["content"]


@OLLAMA_ONLY
async def test_ledger_search_and_reproduce_from_the_chat(
    app: AppProcess, ollama: FakeOllama
) -> None:
    async with chat_client(app) as client:
        await client.wait_text("GO")
        ollama.enqueue(Reply(data={**SPEC, "subject": "a red lighthouse on a cliff"}))
        await client.send("GO")
        caption = await client.wait_text("**Seed**", timeout=30)
        seed = re.search(r"\*\*Seed\*\* (\d+)", caption).group(1)  # type: ignore[union-attr]
        record = re.search(r"#([0-9a-f]{8})", caption).group(1)  # type: ignore[union-attr]
        await client.send("find images like a red lighthouse")
        found = await client.wait_text(f"**#{record}**", timeout=30)  # a search hit
        assert seed in found
        assert any("/api/embed" in p for p, _ in ollama.requests), (found, ollama.requests)
        before = client.count("element")
        await client.send(f"reproduce #{record}")
        await client.wait_for(lambda c: c.count("element") > before, timeout=30)
        await client.wait_for(
            lambda c: sum(f"**Seed** {seed}" in t for t in c.texts()) >= 2, timeout=30
        )
