"""The fake Ollama server speaks the real wire format: checked with the real clients."""

from __future__ import annotations

import base64
import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langchain_ollama import ChatOllama, OllamaEmbeddings
from ollama import AsyncClient, Client, ResponseError
from pydantic import BaseModel

from tests.support import ROOT
from tests.support.fake_ollama import FakeModel, FakeOllama, Reply
from tests.support.fake_ollama_script import load_script, schema_instance, split_text

VL = "qwen3-vl:8b"
EMBED = "nomic-embed-text"
USER = [{"role": "user", "content": "hi"}]
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


@pytest.fixture
def client(ollama: FakeOllama) -> Iterator[Client]:
    with Client(host=ollama.url) as c:
        yield c


def test_list_show_version(ollama: FakeOllama, client: Client) -> None:
    names = [m.model for m in client.list().models]
    assert names == [VL, "nomic-embed-text:latest"]
    shown = client.show(VL)
    assert shown.capabilities == ["completion", "tools", "vision", "thinking"]
    assert shown.modelfile and shown.details and shown.modelinfo
    assert client.show(EMBED).capabilities == ["embedding"]  # ":latest" implied
    assert httpx.get(f"{ollama.url}/api/version").json()["version"]
    assert httpx.get(ollama.url).text == "Ollama is running"


def test_unknown_model_is_404(ollama: FakeOllama, client: Client) -> None:
    with pytest.raises(ResponseError) as err:
        client.show("nope:1b")
    assert err.value.status_code == 404
    assert err.value.error == "model 'nope:1b' not found"
    with pytest.raises(ResponseError) as err:
        client.chat("nope:1b", messages=USER)
    assert err.value.status_code == 404
    with pytest.raises(ResponseError) as err:
        ChatOllama(model="nope:1b", base_url=ollama.url).invoke("hi")
    assert err.value.status_code == 404


def test_pull_streams_progress_then_installs(ollama: FakeOllama, client: Client) -> None:
    lines = list(client.pull("gemma3:4b", stream=True))
    assert lines[0].status == "pulling manifest" and lines[-1].status == "success"
    progress = [p for p in lines if p.total]
    assert len(progress) >= 3
    assert [p.completed for p in progress] == sorted(p.completed or 0 for p in progress)
    assert progress[-1].completed == progress[-1].total
    assert "gemma3:4b" in [m.model for m in client.list().models]
    assert client.show("gemma3:4b").capabilities == ["completion", "vision"]


def test_pull_unknown_fails_like_ollama(client: Client) -> None:
    with pytest.raises(ResponseError, match="file does not exist"):
        list(client.pull("no-such-model", stream=True))
    with pytest.raises(ResponseError) as err:
        client.pull("no-such-model")
    assert err.value.status_code == 500


def test_chat_stream_scripted_then_default(ollama: FakeOllama, client: Client) -> None:
    ollama.enqueue(Reply("Hello there, how can I help you today?"))
    parts = list(client.chat(VL, messages=USER, stream=True, keep_alive="5m"))
    assert len(parts) > 3
    assert "".join(p.message.content or "" for p in parts) == (
        "Hello there, how can I help you today?"
    )
    assert all(not p.done for p in parts[:-1])
    final = parts[-1]
    assert final.done and final.done_reason == "stop" and final.eval_count
    assert final.total_duration and final.prompt_eval_count is not None
    assert ollama.last_chat()["keep_alive"] == "5m"
    assert ollama.pending == 0
    default = client.chat(VL, messages=[{"role": "user", "content": "draw a fox"}])
    assert default.message.content == f"[fake {VL}] You said: draw a fox"


def test_thinking_tool_calls_and_generate(ollama: FakeOllama, client: Client) -> None:
    call = {"name": "generate_image", "arguments": {"prompt": "a fox", "steps": 4}}
    ollama.enqueue(Reply("ok", thinking="let me think", tool_calls=[call]), Reply("caption"))
    parts = list(client.chat(VL, messages=USER, stream=True, think=True))
    assert "".join(p.message.thinking or "" for p in parts) == "let me think"
    calls = [c for p in parts for c in p.message.tool_calls or []]
    assert [(c.function.name, dict(c.function.arguments)) for c in calls] == [
        ("generate_image", {"prompt": "a fox", "steps": 4})
    ]
    gen = client.generate(VL, prompt="describe", images=[base64.b64decode(PNG)])
    assert gen.response == "caption" and gen.done
    assert ollama.requests_to("/api/generate")[-1]["images"] == [PNG]


def test_capability_errors(client: Client) -> None:
    with pytest.raises(ResponseError) as err:
        client.chat(EMBED, messages=USER)
    assert err.value.status_code == 400
    tools = [{"type": "function", "function": {}}]
    with (
        FakeOllama([FakeModel("plain:1b")]) as other,
        Client(host=other.url) as c,
        pytest.raises(ResponseError, match="does not support tools"),
    ):
        c.chat("plain:1b", messages=USER, tools=tools)


def test_embeddings_are_deterministic(ollama: FakeOllama, client: Client) -> None:
    one = client.embed(EMBED, "a red fox").embeddings
    many = client.embed(EMBED, ["a red fox", "a red fox jumps", "quantum tax law"]).embeddings
    assert len(one) == 1 and len(many) == 3 and len(one[0]) == 64
    assert list(one[0]) == list(many[0])
    assert math.isclose(sum(v * v for v in many[1]), 1.0)

    def cos(a: Sequence[float], b: Sequence[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(many[0], many[1]) > cos(many[0], many[2])
    emb = OllamaEmbeddings(model=EMBED, base_url=ollama.url)
    assert emb.embed_query("a red fox") == list(one[0])
    assert len(emb.embed_documents(["x", "y"])) == 2
    legacy = client.embeddings(EMBED, prompt="a red fox").embedding
    assert list(legacy) == list(one[0])


def test_ps_and_unload(ollama: FakeOllama, client: Client) -> None:
    assert client.ps().models == []
    client.chat(VL, messages=USER)
    assert [m.model for m in client.ps().models] == [VL]
    unloaded = client.generate(VL, keep_alive=0)
    assert unloaded.done_reason == "unload"
    assert ollama.requests_to("/api/generate")[-1]["keep_alive"] == 0
    assert client.ps().models == []


def test_chatollama_invoke_and_stream(ollama: FakeOllama) -> None:
    ollama.enqueue(Reply("Scripted answer."), Reply("one two three four five six"))
    llm = ChatOllama(model=VL, base_url=ollama.url, keep_alive="10m")
    assert llm.invoke("hello").content == "Scripted answer."
    chunks = [c.content for c in llm.stream("again")]
    assert len([c for c in chunks if c]) >= 3
    assert "".join(str(c) for c in chunks) == "one two three four five six"
    sent = ollama.last_chat()
    assert sent["keep_alive"] == "10m" and sent["stream"] is True
    assert sent["messages"][-1] == {"role": "user", "content": "again"}


def test_chatollama_tool_calls(ollama: FakeOllama) -> None:
    @tool
    def generate_image(prompt: str, steps: int = 20) -> str:
        """Generate an image."""
        return "done"

    args = {"prompt": "a cat", "steps": 8}
    ollama.enqueue(Reply(tool_calls=[{"name": "generate_image", "arguments": args}]))
    msg = ChatOllama(model=VL, base_url=ollama.url).bind_tools([generate_image]).invoke("cat")
    assert [(c["name"], c["args"]) for c in msg.tool_calls] == [("generate_image", args)]
    tools = ollama.last_chat()["tools"]
    assert tools[0]["function"]["name"] == "generate_image"


class Caption(BaseModel):
    title: str
    tags: list[str]
    nsfw: bool


def test_chatollama_structured_output(ollama: FakeOllama) -> None:
    ollama.enqueue(Reply(data={"title": "Fox", "tags": ["animal"], "nsfw": False}))
    llm = ChatOllama(model=VL, base_url=ollama.url)
    structured = llm.with_structured_output(Caption, method="json_schema")
    assert structured.invoke("caption it") == Caption(title="Fox", tags=["animal"], nsfw=False)
    fmt = ollama.last_chat()["format"]
    assert fmt["properties"].keys() == {"title", "tags", "nsfw"}
    assert isinstance(structured.invoke("unscripted"), Caption)  # default fits the schema


def test_chatollama_images_arrive_base64(ollama: FakeOllama) -> None:
    content: list[str | dict] = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": f"data:image/png;base64,{PNG}"},
    ]
    reply = ChatOllama(model=VL, base_url=ollama.url).invoke([HumanMessage(content=content)])
    assert "1 image(s) received" in str(reply.content)
    assert ollama.last_chat()["messages"][-1]["images"] == [PNG]


def test_error_replies(ollama: FakeOllama, client: Client) -> None:
    ollama.enqueue(Reply(error="runner crashed", status=503))
    with pytest.raises(ResponseError) as err:
        list(client.chat(VL, messages=USER, stream=True))
    assert err.value.status_code == 503 and err.value.error == "runner crashed"
    ollama.enqueue(Reply("a b c d e", error="boom", error_after=2))
    got: list[str] = []
    with pytest.raises(ResponseError, match="boom"):
        got.extend(p.message.content or "" for p in client.chat(VL, messages=USER, stream=True))
    assert got == ["a", " b"]


def test_hangup_mid_stream_then_recovers(ollama: FakeOllama, client: Client) -> None:
    ollama.enqueue(Reply("never gets to the end of this", hangup_after=2))
    got: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        got.extend(p.message.content or "" for p in client.chat(VL, messages=USER, stream=True))
    assert len(got) == 2
    ollama.enqueue(Reply("x", hangup_after=0))
    with pytest.raises(httpx.RemoteProtocolError):
        client.chat(VL, messages=USER)
    assert client.chat(VL, messages=USER).message.content


def test_delay_and_responder(ollama: FakeOllama, client: Client) -> None:
    ollama.enqueue(Reply("a b c", delay=0.05))
    start = time.monotonic()
    list(client.chat(VL, messages=USER, stream=True))
    assert time.monotonic() - start >= 0.15
    ollama.responder = lambda body: Reply(f"{len(body['messages'])} messages")
    assert client.chat(VL, messages=USER * 3).message.content == "3 messages"
    ollama.responder = lambda body: None
    assert "You said" in (client.chat(VL, messages=USER).message.content or "")


def test_stop_and_restart_on_same_port(ollama: FakeOllama, client: Client) -> None:
    port = ollama.port
    assert client.list().models
    ollama.stop()
    assert not ollama.running
    with pytest.raises(ConnectionError):
        client.list()
    with pytest.raises((ConnectionError, httpx.ConnectError)):
        ChatOllama(model=VL, base_url=ollama.url).invoke("hi")
    ollama.start()
    assert ollama.port == port
    assert client.list().models
    assert ChatOllama(model=VL, base_url=ollama.url).invoke("hi").content


def test_stop_interrupts_a_slow_stream(ollama: FakeOllama, client: Client) -> None:
    ollama.enqueue(Reply("a b c d e f g h", delay=0.2))
    stream = client.chat(VL, messages=USER, stream=True)
    next(stream)
    start = time.monotonic()
    ollama.stop()
    with pytest.raises(httpx.TransportError):
        list(stream)
    assert time.monotonic() - start < 1.0


async def test_async_client(ollama: FakeOllama) -> None:
    ollama.enqueue(Reply("async hello world"))
    aclient = AsyncClient(host=ollama.url)
    parts = [p async for p in await aclient.chat(VL, messages=USER, stream=True)]
    assert "".join(p.message.content or "" for p in parts) == "async hello world"
    assert (await aclient.show(VL)).capabilities
    llm = ChatOllama(model=VL, base_url=ollama.url)
    assert (await llm.ainvoke("hi")).content


def test_recording_and_clear(ollama: FakeOllama, client: Client) -> None:
    client.list()
    client.chat(VL, messages=USER, format="json", options={"temperature": 0})
    assert [r.path for r in ollama.requests] == ["/api/tags", "/api/chat"]
    path, body = ollama.requests[-1]
    assert path == "/api/chat" and body["format"] == "json"
    assert body["options"] == {"temperature": 0}
    ollama.enqueue("left over")
    ollama.clear()
    assert ollama.requests == [] and ollama.pending == 0


def test_script_helpers(tmp_path: Path) -> None:
    script = tmp_path / "replies.yaml"
    script.write_text(
        '- "plain"\n- {tool_calls: [{name: f, arguments: {x: 1}}]}\n- {data: {a: 1}}\n',
        encoding="utf-8",
    )
    replies = load_script(script)
    assert [r.text for r in replies] == ["plain", "", '{"a": 1}']
    assert replies[1].wire_tool_calls()[0]["function"]["arguments"] == {"x": 1}
    with pytest.raises(ValueError, match="unknown reply field"):
        Reply.coerce({"contnet": "typo"})
    assert (
        "".join(split_text("長い日本語の文章です。 and  more "))
        == "長い日本語の文章です。 and  more "
    )
    schema = Caption.model_json_schema()
    assert Caption.model_validate(schema_instance(schema))


def test_cli_serves_a_script(tmp_path: Path) -> None:
    script = tmp_path / "replies.json"
    script.write_text(json.dumps(["from the script"]), encoding="utf-8")
    cmd = [sys.executable, "-m", "tests.support.fake_ollama", "--port", "0"]
    cmd += ["--script", str(script), "--models", "tiny:1b=completion,tools"]
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:\d+", line)
            assert match, line
            url = match.group(0)
            tags = httpx.get(f"{url}/api/tags").json()
            assert [m["name"] for m in tags["models"]] == ["tiny:1b"]
            with Client(host=url) as c:
                reply = c.chat("tiny:1b", messages=USER)
            assert reply.message.content == "from the script"
        finally:
            proc.terminate()
            proc.wait(timeout=5)
