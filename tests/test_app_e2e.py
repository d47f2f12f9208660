"""The real app (``egaki run``) driven over Chainlit's socket.io, against the fake Ollama."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.chainlit_client import AppProcess, ChatClient
from tests.fake_ollama import FakeOllama, Reply

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama(pull_delay=0.05) as srv:
        yield srv


@pytest.fixture(scope="module")
def app(ollama: FakeOllama, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppProcess]:
    data = tmp_path_factory.mktemp("appdata")
    env = {
        "EGAKI_DATA_DIR": str(data),
        "EGAKI_OLLAMA_HOST": ollama.url,
        "EGAKI_OFFLINE": "1",
        "EGAKI_IMAGE_ENGINE": "fake",
    }
    with AppProcess(env) as proc:
        yield proc


@pytest.fixture(autouse=True)
def _fresh(ollama: FakeOllama) -> None:
    if not ollama.running:
        ollama.start()
    ollama.clear()


async def test_serves_http_200_on_loopback(app: AppProcess) -> None:
    assert app.url.startswith("http://127.0.0.1:")
    resp = httpx.get(app.url)
    assert resp.status_code == 200 and "<html" in resp.text.lower()
    print(f"app started in {app.started_in_s:.1f} s")


INTERVIEW_JA = {
    "slots": {"subject": "two women playing beach volleyball", "setting": "beach"},
    "questions": [{"slot": "lighting", "text": "時間帯や光はどうしますか？"}],
    "ready": False,
}
SPEC = {
    "subject": "two women playing beach volleyball",
    "setting": "sunny beach, blue sea",
    "lighting": "bright midday sun",
    "style": "sports photography",
    "negative_extra": "extra people",
    "width": 512,
    "height": 512,
    "steps": 20,
    "cfg_scale": 7,
    "sampler": "Euler a",
}


async def test_japanese_request_question_go_prompt_card_and_inline_image(
    app: AppProcess, ollama: FakeOllama
) -> None:
    client = await ChatClient(app.url, language="ja-JP").connect()
    try:
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
        caption = await client.wait_text(f"**Seed** {seed}")
        assert "512×512" in caption
        pngs = sorted((app.data_dir / "images").glob("*.png"))
        from tools.infotext.png import read_png_parameters

        assert any(f"Seed: {seed}," in (read_png_parameters(p) or "") for p in pngs)
        await client.wait_for(lambda c: any("バリエーション" in a["label"] for a in c.actions))
    finally:
        await client.close()


async def test_free_chat_after_a_picture_is_streamed(app: AppProcess, ollama: FakeOllama) -> None:
    client = await ChatClient(app.url).connect()
    try:
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
    finally:
        await client.close()


async def test_ollama_absent_gives_actionable_error_then_recovers(
    app: AppProcess, ollama: FakeOllama
) -> None:
    ollama.stop()
    client = await ChatClient(app.url, language="ja-JP").connect()
    try:
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
    finally:
        await client.close()


async def test_missing_model_offers_pull_with_live_progress(
    app: AppProcess, ollama: FakeOllama
) -> None:
    ollama.remove_model("qwen3-vl:8b")
    client = await ChatClient(app.url).connect()
    client.answer_ask = lambda spec, actions: next(a for a in actions if a["name"] == "pull")
    try:
        await client.wait_text("is ready", timeout=30)
        updates = [d for e, d in client.events if e == "update_message" and "▰" in d["output"]]
        assert len(updates) >= 2
        assert ollama.find("qwen3-vl:8b") is not None
    finally:
        await client.close()


def test_app_log_has_no_outbound_or_traceback(app: AppProcess) -> None:
    log = app.log()
    assert "Traceback" not in log, log
    assert Path(app.log_path).exists()


async def test_thread_resumes_with_its_images_after_restart(
    ollama: FakeOllama, tmp_path: Path
) -> None:
    env = {
        "EGAKI_DATA_DIR": str(tmp_path / "data"),
        "EGAKI_OLLAMA_HOST": ollama.url,
        "EGAKI_OFFLINE": "1",
        "EGAKI_IMAGE_ENGINE": "fake",
    }
    with AppProcess(env) as first:
        client = await ChatClient(first.url).connect()
        try:
            await client.wait_text("GO")
            ollama.enqueue(Reply(data=SPEC))
            await client.send("GO")
            await client.wait_for(lambda c: c.count("element") >= 1, timeout=30)
            await client.wait_text("What next?")
            thread_id = next(d["thread_id"] for e, d in client.events if e == "first_interaction")
            cookies = client.cookies
        finally:
            await client.close()
    with AppProcess(env, port=first.port) as second:
        resumed = ChatClient(second.url, thread_id=thread_id)
        resumed.cookies = cookies
        await resumed.connect()
        try:
            await resumed.wait_for(lambda c: c.count("resume_thread") >= 1, timeout=30)
            thread = next(d for e, d in resumed.events if e == "resume_thread")
            images = [el for el in thread.get("elements") or [] if el.get("type") == "image"]
            assert images, thread
            resp = httpx.get(second.url + images[0]["url"], cookies=cookies)
            assert resp.status_code == 200 and resp.content[:8] == b"\x89PNG\r\n\x1a\n"
            await resumed.wait_text("What next?")  # the studio picks up where it stopped
            assert any(a["name"] == "egaki" for a in resumed.actions)
            ollama.enqueue(Reply("Still here — and I remember the lighthouse."))
            await resumed.send("do you remember?")
            await resumed.wait_text("Still here")
            body = ollama.last_chat()
            assert "(two women:1.2) playing beach volleyball" in body["messages"][0]["content"]
        finally:
            await resumed.close()


async def test_ledger_search_and_reproduce_from_the_chat(
    app: AppProcess, ollama: FakeOllama
) -> None:
    import re

    client = await ChatClient(app.url).connect()
    try:
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
        await client.wait_for(lambda c: c.count("element") > before + 0, timeout=30)
        await client.wait_for(
            lambda c: sum(f"**Seed** {seed}" in t for t in c.texts()) >= 2, timeout=30
        )
    finally:
        await client.close()
