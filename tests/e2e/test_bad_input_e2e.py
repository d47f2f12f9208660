"""Bad input, end to end: the real app answers clearly, stays usable and loses nothing.

Driven over Chainlit's socket.io (no browser) against the fake Ollama and the tiny
random-weight SD1.5 pipeline, so generate_image's arguments meet the real checks
(request validation, the LoRA tag parser in the diffusers engine) and a stopped job is a
real diffusers job. Each test ends by showing the chat still works.
"""

from __future__ import annotations

import asyncio
import io
import random
import re
import sqlite3
import struct
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.support.app_process import AppProcess, ChatClient, app_env, chat_client
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.replies import DESCRIPTION, SPEC
from tests.support.tiny_pipelines import TinyModels

pytestmark = pytest.mark.slow

INTERVIEW = {"slots": {"subject": "a cat"}, "ready": False,
             "questions": [{"slot": "setting", "text": "Where is the cat?"}]}
CRASH_MARKERS = ("Traceback", "Something went wrong", "internal error")


@pytest.fixture(scope="module")
def app(
    ollama_server: FakeOllama, tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppProcess]:
    env = app_env(
        tmp_path_factory.mktemp("bad-input-app"), ollama_server, tiny_models,
        EGAKI_DEVICE="cpu",  # so the 150-step job is slow enough to stop, GPU or not
    )
    with AppProcess(env) as proc:
        yield proc
    assert "Traceback" not in proc.log(), proc.log()


# --- helpers -----------------------------------------------------------------------------


@asynccontextmanager
async def quick_chat(app: AppProcess) -> AsyncIterator[ChatClient]:
    """A chat past its welcome, drawing 4 Euler steps (the tiny model is quick)."""
    async with chat_client(app) as client:
        await client.wait_text("GO")  # the welcome
        await client.sio.emit("chat_settings_change", {"steps": "4", "sampler": "Euler"})
        yield client


def said(client: ChatClient) -> str:
    return "\n".join(client.texts())


def assert_no_crash(client: ChatClient) -> None:
    text = said(client)
    assert not any(marker in text for marker in CRASH_MARKERS), text


def images_shown(client: ChatClient) -> int:
    """Finished pictures sent to the chat (the live step previews don't count)."""
    return sum(e == "element" and d.get("type") == "image" and d.get("name") != "preview"
               for e, d in client.events)


def progress_updates(client: ChatClient) -> int:
    return sum(e in ("new_message", "update_message") and "Drawing" in d.get("output", "")
               for e, d in client.events)


async def progress_goes_quiet(client: ChatClient, quiet_s: float = 1.5,
                             within_s: float = 15) -> bool:
    """True once no step progress arrived for ``quiet_s`` (a running job reports a step
    at least every 0.3 s), False if it kept moving for ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        seen = progress_updates(client)
        await asyncio.sleep(quiet_s)
        if progress_updates(client) == seen:
            return True
    return False


async def first_picture(client: ChatClient, ollama: FakeOllama) -> str:
    """GO straight to a picture; afterwards free chat goes to the tool-calling agent.
    Returns the picture's ledger id."""
    ollama.enqueue(Reply(data=SPEC))
    await client.send("GO")
    caption = await client.wait_text("**Seed**", timeout=60)
    await client.wait_text("What next?")
    found = re.search(r"#([0-9a-f]{8})", caption)
    assert found, caption
    return found.group(1)


def png_claiming(width: int, height: int) -> bytes:
    """A small, well-formed PNG whose IHDR claims ``width`` × ``height`` (a pixel bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


def truncated_png() -> bytes:
    rng = random.Random(7)
    im = Image.frombytes("RGB", (128, 128), rng.randbytes(128 * 128 * 3))  # incompressible
    buf = io.BytesIO()
    im.save(buf, "PNG")
    data = buf.getvalue()
    return data[: len(data) * 3 // 5]


def ledger_rows(app: AppProcess) -> list[tuple[str, str]]:
    """(id, path) of every recorded image, read straight from the ledger's SQLite file."""
    db = sqlite3.connect(f"file:{app.data_dir / 'ledger.sqlite3'}?mode=ro", uri=True)
    try:
        return [(str(i), str(p)) for i, p in db.execute("SELECT id, path FROM records")]
    finally:
        db.close()


# --- uploads -----------------------------------------------------------------------------


async def test_bad_uploads_are_explained_and_the_earlier_photo_still_works(
    app: AppProcess, ollama: FakeOllama, tmp_path: Path
) -> None:
    photo = tmp_path / "cat.jpg"
    Image.new("RGB", (96, 64), (200, 120, 40)).save(photo, "JPEG")
    bad = {
        "notes.png": (b"Just some notes, not a picture.\n", "not a picture I can open"),
        "cut.png": (truncated_png(), "can't be read as an image"),
        "bomb.png": (png_claiming(20_000, 20_000), "20000×20000"),
    }
    async with quick_chat(app) as client:
        ollama.enqueue(Reply(data=DESCRIPTION))
        await client.send_files("", [await client.upload(photo, "image/jpeg")])
        await client.wait_text("tabby cat sleeping on a windowsill")

        def is_generate(a: dict[str, Any]) -> bool:
            return bool(a["payload"].get("action") == "vision_generate")

        await client.wait_for(lambda c: any(map(is_generate, c.actions)))  # sent after the text
        generate = client.action(is_generate)

        async with httpx.AsyncClient(cookies=client.cookies) as http:  # Chainlit lets all in
            taken = await http.post(f"{app.url}/project/file",
                                    params={"session_id": client.session_id},
                                    files={"file": ("notes.txt", b"hello", "text/plain")})
        assert taken.status_code == 200, taken.text  # Egaki explains it (below), not a toast

        for name, (data, expected) in bad.items():
            path = tmp_path / name
            path.write_bytes(data)
            await client.send_files("", [await client.upload(path, "image/png")])
            answer = await client.wait_text(expected)
            assert name in answer, answer
        assert "a text file" in said(client)  # says what it got instead
        assert "limit is 40 megapixels" in said(client)
        assert_no_crash(client)

        before = images_shown(client)
        await client.click(generate)  # the photo from before the bad uploads is still known
        await client.wait_for(lambda c: images_shown(c) > before, timeout=60)
        ollama.enqueue(Reply(data=INTERVIEW))
        await client.send("a cat")
        await client.wait_text("Where is the cat?")
        assert_no_crash(client)


# --- the agent's generate_image tool -----------------------------------------------------

BAD_CALLS: list[tuple[dict[str, Any], str]] = [
    ({"width": 20_000}, "less than or equal to 2048"),
    ({"width": 500}, "multiple of 8 but is 500; try 496 or 504"),
    ({"steps": 0}, "greater than or equal to 1"),
    ({"steps": 1_000_000}, "less than or equal to 150"),
    ({"cfg_scale": -3}, "greater than or equal to 0"),
    ({"sampler": "Bogus"}, "Unknown sampler 'Bogus'"),
    ({"prompt": "a cat, <lora:../../etc/passwd:1>"}, "must be a plain file name"),
]


async def test_bad_generate_image_arguments_are_taught_to_the_model(
    app: AppProcess, ollama: FakeOllama
) -> None:
    async with quick_chat(app) as client:
        await first_picture(client, ollama)
        shown = images_shown(client)
        calls = [{"name": "generate_image", "arguments": {"prompt": "a cat", **args}}
                 for args, _ in BAD_CALLS]
        ollama.enqueue(Reply(tool_calls=calls), Reply("Sorry, those settings can't work."))
        await client.send("make it huge, weird and with that lora")
        await client.wait_text("those settings can't work", timeout=60)

        results = [m["content"] for m in ollama.last_chat()["messages"] if m["role"] == "tool"]
        assert len(results) == len(BAD_CALLS), results
        for (args, teaching), result in zip(BAD_CALLS, results, strict=True):
            assert teaching in result, (args, result)
            assert "Generated" not in result, (args, result)
        assert images_shown(client) == shown  # nothing was drawn
        # what the tool really did: a failed tool step per call, and Egaki's own note
        await client.wait_text("No image was made", timeout=30)
        steps = [d for e, d in client.events if e == "new_message" and d.get("type") == "tool"]
        assert len(steps) == len(BAD_CALLS) and all(d.get("isError") for d in steps), steps
        assert_no_crash(client)

        ollama.enqueue(Reply("Still here."))
        await client.send("ok, thanks")
        await client.wait_text("Still here.")


# --- Ollama and the image job going away mid-way -----------------------------------------


async def test_ollama_hanging_up_mid_reply_is_explained_then_the_chat_recovers(
    app: AppProcess, ollama: FakeOllama
) -> None:
    async with quick_chat(app) as client:
        await first_picture(client, ollama)
        ollama.enqueue(Reply("Here is a long answer about lighthouses and light", hangup_after=2))
        await client.send("tell me about lighthouses")
        await client.wait_text("stopped answering mid-reply", timeout=30)
        assert_no_crash(client)

        ollama.enqueue(Reply("Back again: lighthouses guide ships."))
        await client.send("tell me about lighthouses")
        await client.wait_text("Back again")
        sent = ollama.last_chat()["messages"]
        assert [m["content"] for m in sent if m["role"] == "user"][-1] == (
            "tell me about lighthouses"
        )


async def test_stopping_a_slow_job_frees_the_queue_and_keeps_earlier_images(
    app: AppProcess, ollama: FakeOllama
) -> None:
    async with quick_chat(app) as client:
        first_id = await first_picture(client, ollama)
        rows = ledger_rows(app)
        assert first_id in {i for i, _ in rows}
        slow = {"prompt": "a very detailed castle", "width": 512, "height": 512, "steps": 150}
        ollama.enqueue(Reply(tool_calls=[{"name": "generate_image", "arguments": slow}]),
                       Reply("Here is your castle."))
        await client.send("draw a detailed castle")
        await client.wait_text("/150", timeout=60)  # "🎨 Drawing ▰▱▱ 3/150": it has started
        await client.sio.emit("stop")
        await client.wait_text("Task manually stopped.")
        assert await progress_goes_quiet(client), "the castle kept drawing after the stop"

        started = time.monotonic()
        ollama.clear()  # "Here is your castle." never gets asked for
        quick = {"prompt": "a small house", "width": 256, "height": 256, "steps": 2}
        ollama.enqueue(Reply(tool_calls=[{"name": "generate_image", "arguments": quick}]),
                       Reply("Here is your house."))
        await client.send("then a small house")
        await client.wait_text("Here is your house.", timeout=60)
        # Had the castle kept drawing, the house would have waited behind its 150 steps
        # (about 0.2 s each for the tiny model at 512² on 2 CPU cores).
        assert time.monotonic() - started < 20
        tool = [m for m in ollama.last_chat()["messages"] if m["role"] == "tool"][-1]
        assert "Generated 1 image (256x256, 2 steps" in tool["content"], tool

        after = ledger_rows(app)
        assert set(rows) < set(after) and len(after) == len(rows) + 1  # no castle, one house
        assert all((app.data_dir / p).is_file() for _, p in after)  # relative to the data dir
        assert "a very detailed castle" not in said(client)  # no castle caption
        await client.send(f"show #{first_id}")
        await client.wait_text(f"#{first_id}**", timeout=30)
        assert_no_crash(client)
