"""The real app (``egaki run``) on a real model: SmolLM2-135M behind llama.cpp's server.

What must hold whatever the tiny model says: each turn ends within a bounded time with
either Egaki's next step or a clear localised message; "GO" / "おまかせ" yields a picture
(the fake image engine); no traceback; the person's words are never lost. The model's
real timings are printed (``-s``) for the record.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.realmodel.conftest import ALIAS
from tests.realmodel.llm_server import LlamaServer
from tests.support.app_process import AppProcess, ChatClient

pytestmark = pytest.mark.slow

TURN_S = 90.0  # one interview turn or spec on 2 contended cores, retries included


@pytest.fixture(scope="module")
def app(llama_server: LlamaServer, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[AppProcess]:
    env = {
        "EGAKI_DATA_DIR": str(tmp_path_factory.mktemp("realapp")),
        "EGAKI_LLM_API": "openai",
        "EGAKI_OPENAI_BASE_URL": llama_server.base_url,
        "EGAKI_CHAT_MODEL": ALIAS,
        "EGAKI_EMBEDDER": "hash",
        "EGAKI_OFFLINE": "1",
        "EGAKI_IMAGE_ENGINE": "fake",
    }
    with AppProcess(env) as proc:
        yield proc


async def _turn(client: ChatClient, text: str, label: str) -> float:
    before = len(client.texts())
    t0 = time.perf_counter()
    await client.send(text)
    await client.wait_for(lambda c: len(c.texts()) > before + 1 or c.count("element") > 0,
                          timeout=TURN_S)
    took = time.perf_counter() - t0
    print(f"\n[{label}] {took:.1f} s: {client.texts()[-1][:160]!r}")
    return took


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize(("lang", "request_text", "go"), [
    ("en-US", "two women playing beach volleyball", "GO"),
    ("ja-JP", "ビーチバレーの写真を作りたい", "おまかせ"),
])
async def test_request_then_go_yields_a_picture_or_a_clear_message(
    app: AppProcess, lang: str, request_text: str, go: str
) -> None:
    client = await ChatClient(app.url, language=lang).connect()
    try:
        await client.wait_text(go, timeout=30)  # the welcome names the shortcut
        await _turn(client, request_text, f"{lang} first reply")
        elements = client.count("element")
        t0 = time.perf_counter()
        await client.send(go)
        await client.wait_for(lambda c: c.count("element") > elements, timeout=2 * TURN_S)
        print(f"\n[{lang} {go} -> picture] {time.perf_counter() - t0:.1f} s")
        shown = "\n".join(client.texts())
        assert "Traceback" not in shown
        assert request_text in shown or request_text in "\n".join(
            str(d) for _, d in client.events)  # the person's words are still there
    finally:
        await client.close()


def test_app_log_has_no_traceback(app: AppProcess) -> None:
    log = app.log()
    assert "Traceback" not in log, log[-4000:]
