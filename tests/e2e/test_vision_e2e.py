"""Uploads through the real app: PNG info reuse, image → prompt, paint a mask, inpaint."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.support.app_process import AppProcess, app_env, chat_client
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.replies import DESCRIPTION, PROPOSAL, REGION
from tools.core.engine import GeneratedImage
from tools.core.request import ImageRequest
from tools.infotext.png import save_png

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app(
    ollama_server: FakeOllama, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppProcess]:
    with AppProcess(app_env(tmp_path_factory.mktemp("visiondata"), ollama_server)) as proc:
        yield proc


def photo(tmp_path: Path) -> Path:
    path = tmp_path / "cat.jpg"
    Image.new("RGB", (96, 64), (200, 120, 40)).save(path, "JPEG")
    return path


async def test_png_with_a1111_settings_is_offered_for_exact_reuse(
    app: AppProcess, tmp_path: Path
) -> None:
    req = ImageRequest(prompt="a castle, <lora:x:0.5>", negative_prompt="fog", width=64,
                       height=64, steps=7, sampler="Euler a", seed=424242)
    png = save_png(GeneratedImage(image=Image.new("RGB", (64, 64)), request=req, seed=424242,
                                  model_name="m", model_hash="abcdef1234"), tmp_path / "in.png")
    async with chat_client(app) as client:
        await client.wait_text("GO")
        ref = await client.upload(png, "image/png")
        await client.send_files("", [ref])
        await client.wait_text("424242")
        await client.wait_for(lambda c: any(a["payload"].get("action") == "vision_reuse"
                                            for a in c.actions))
        reuse = client.action(lambda a: a["payload"].get("action") == "vision_reuse")
        await client.click(reuse)
        await client.wait_text("**Seed** 424242", timeout=30)


async def test_photo_to_prompt_then_paint_mask_and_inpaint(
    app: AppProcess, ollama: FakeOllama, tmp_path: Path
) -> None:
    async with chat_client(app) as client:
        await client.wait_text("GO")
        ollama.enqueue(Reply(data=DESCRIPTION))
        ref = await client.upload(photo(tmp_path), "image/jpeg")
        await client.send_files("", [ref])
        await client.wait_text("tabby cat sleeping on a windowsill")
        await client.wait_for(lambda c: any(a["payload"].get("action") == "vision_inpaint"
                                            for a in c.actions))
        sent = ollama.last_chat()
        assert any(m.get("images") for m in sent["messages"])  # the picture went inline
        inpaint = client.action(lambda a: a["payload"].get("action") == "vision_inpaint")
        await client.click(inpaint)
        await client.wait_for(lambda c: any(
            e == "element" and d.get("type") == "custom" for e, d in c.events))
        painter = next(d for e, d in client.events if e == "element" and d.get("type") == "custom")
        assert painter["name"] == "MaskPainter"
        props = painter["props"]
        mask = Image.new("L", (props["width"] // 2, props["height"] // 2), 0)  # painted small
        mask.paste(255, (5, 5, 30, 25))
        buf = io.BytesIO()
        mask.save(buf, "PNG")
        data_url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        ollama.enqueue(Reply(data=REGION), Reply(data=PROPOSAL))
        await client.click({"name": "egaki_mask", "payload": {}, "label": ""},
                           mask=data_url, image_id=props["image_id"], instruction="a mug")
        await client.wait_for(lambda c: sum(
            e == "element" and d.get("type") == "image" for e, d in c.events) >= 2, timeout=30)
        region_request = ollama.chat_requests()[-2]
        crop_b64 = next(m["images"][0] for m in region_request["messages"] if m.get("images"))
        crop = Image.open(io.BytesIO(base64.b64decode(crop_b64)))
        assert crop.width < props["width"]  # only the region, not the whole picture


async def test_non_image_upload_gets_a_clear_message_and_chat_goes_on(
    app: AppProcess, ollama: FakeOllama, tmp_path: Path
) -> None:
    fake = tmp_path / "notes.png"
    fake.write_bytes(b"%PDF-1.4 not an image at all")
    async with chat_client(app) as client:
        await client.wait_text("GO")
        ref = await client.upload(fake, "image/png")
        await client.send_files("", [ref])
        await client.wait_for(lambda c: any("PNG" in t and "JPEG" in t for t in c.texts()))
        assert "Traceback" not in "".join(client.texts())
        ollama.enqueue(Reply(data={"slots": {"subject": "a cat"}, "ready": False,
                                   "questions": [{"slot": "setting", "text": "Where is it?"}]}))
        await client.send("a cat")
        await client.wait_text("Where is it?")  # the interview goes on as if nothing happened
        assert "a cat" in ollama.last_chat()["messages"][-1]["content"]


async def test_inpaint_by_typed_box_or_uploaded_mask(
    app: AppProcess, ollama: FakeOllama, tmp_path: Path
) -> None:
    async with chat_client(app) as client:
        await client.wait_text("GO")
        ollama.enqueue(Reply(data=DESCRIPTION))
        await client.send_files("", [await client.upload(photo(tmp_path), "image/jpeg")])
        await client.wait_text("tabby cat sleeping on a windowsill")
        await client.wait_for(lambda c: any(a["payload"].get("action") == "vision_inpaint"
                                            for a in c.actions))

        def images() -> int:
            return sum(e == "element" and d.get("type") == "image" for e, d in client.events)

        inpaint = client.action(lambda a: a["payload"].get("action") == "vision_inpaint")
        await client.click(inpaint)
        await client.wait_text("x,y,w,h")  # the painter's text names the other ways
        before = images()
        ollama.enqueue(Reply(data=REGION), Reply(data=PROPOSAL))
        await client.send("0.1,0.1,0.4,0.5 a red mug")
        await client.wait_for(lambda c: images() >= before + 2, timeout=30)
        region = ollama.chat_requests()[-2]
        crop_b64 = next(m["images"][0] for m in region["messages"] if m.get("images"))
        assert Image.open(io.BytesIO(base64.b64decode(crop_b64))).width < 96

        await client.click(inpaint)
        mask = tmp_path / "mask.png"
        m = Image.new("L", (48, 32), 0)
        m.paste(255, (24, 0, 48, 16))
        m.save(mask)
        before = images()
        ollama.enqueue(Reply(data=REGION), Reply(data=PROPOSAL))
        await client.send_files("a mug", [await client.upload(mask, "image/png")])
        await client.wait_for(lambda c: images() >= before + 2, timeout=30)
        assert PROPOSAL["prompt"] in "".join(client.texts())
