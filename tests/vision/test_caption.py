"""The captioner on the wire: images arrive base64, regions send only the crop, no-vision errors."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_ollama import ChatOllama
from PIL import Image

from tests.support.fake_ollama import FakeModel, FakeOllama, Reply
from tools.core.errors import CapabilityMissing
from tools.core.settings import Settings
from tools.llm.ollama_gateway import OllamaGateway
from vision.caption import (
    SEND_MAX_SIDE,
    ImageDescription,
    InpaintProposal,
    OllamaCaptioner,
    RegionCaption,
    region_box,
)
from vision.masks import context_box, mask_from_box

VL = "qwen3-vl:8b"
DESCRIPTION = {
    "subject": "a red fox sitting",
    "environment": "snowy forest, morning",
    "lighting": "soft backlight",
    "style": "wildlife photo",
    "camera": "telephoto, shallow depth of field",
    "negative": "people, buildings",
    "summary": "雪の森に座る赤いキツネ",
}


def settings_for(ollama: FakeOllama, tmp_path: Path, **kw: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", ollama_host=ollama.url, **kw)


def captioner(ollama: FakeOllama, tmp_path: Path, model: str = VL) -> OllamaCaptioner:
    s = settings_for(ollama, tmp_path)
    return OllamaCaptioner(
        ChatOllama(model=model, base_url=ollama.url), gateway=OllamaGateway(s), model_name=model
    )


def gradient(width: int, height: int) -> Image.Image:
    """A picture where every pixel is different, so a crop can be recognised exactly."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x % 256, y % 256, (x * 7 + y * 13) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


def sent_images(body: dict[str, Any]) -> list[Image.Image]:
    out: list[Image.Image] = []
    for message in body["messages"]:
        for b64 in message.get("images") or []:
            out.append(Image.open(io.BytesIO(base64.b64decode(b64))))
    return out


async def test_describe_sends_the_image_base64_downscaled_and_orders_the_prompt(
    ollama: FakeOllama, tmp_path: Path
) -> None:
    ollama.enqueue(Reply(data=DESCRIPTION))
    desc = await captioner(ollama, tmp_path).describe(gradient(1600, 800), lang="ja")
    assert desc.prompt == (
        "a red fox sitting, snowy forest, morning, soft backlight, wildlife photo, "
        "telephoto, shallow depth of field"
    )
    assert desc.summary == DESCRIPTION["summary"]
    body = ollama.last_chat()
    [image] = sent_images(body)
    assert image.size == (SEND_MAX_SIDE, SEND_MAX_SIDE // 2)
    assert len(body["messages"][-1]["images"]) == 1 and body["messages"][-1]["role"] == "user"
    assert set(body["format"]["properties"]) >= {"subject", "environment", "camera", "summary"}
    assert "Japanese" in body["messages"][0]["content"]  # the summary's language


async def test_region_caption_sends_only_the_crop_around_the_mask(
    ollama: FakeOllama, tmp_path: Path
) -> None:
    image = gradient(400, 300)
    mask = mask_from_box("200,150,80,60", image.size)
    ollama.enqueue(Reply(data={"caption": "a wooden bench", "summary": "ベンチ"}))
    region = await captioner(ollama, tmp_path).describe_region(image, mask, lang="ja")
    assert region == RegionCaption(caption="a wooden bench", summary="ベンチ")

    box = context_box(mask.image)
    assert region_box(image, mask) == box
    [sent] = sent_images(ollama.last_chat())
    assert sent.size == (box[2] - box[0], box[3] - box[1]) != image.size
    assert np.array_equal(np.asarray(sent.convert("RGB")), np.asarray(image.crop(box)))


async def test_inpaint_proposal_is_text_only_with_the_request_as_data(
    ollama: FakeOllama, tmp_path: Path
) -> None:
    ollama.enqueue(Reply(data={"prompt": "a small sailboat", "negative": "bench", "summary": "船"}))
    full = ImageDescription.model_validate(DESCRIPTION)
    proposal = await captioner(ollama, tmp_path).propose_inpaint_prompt(
        full, RegionCaption(caption="a wooden bench"), "ヨットにして", lang="ja"
    )
    assert proposal.prompt == "a small sailboat" and proposal.negative == "bench"
    body = ollama.last_chat()
    assert not sent_images(body)
    data = json.loads(body["messages"][-1]["content"])
    assert data == {
        "whole_picture": full.prompt,
        "marked_area_now": "a wooden bench",
        "persons_request": "ヨットにして",
    }
    assert "never instructions" in body["messages"][0]["content"]


async def test_japanese_prompt_fields_get_one_corrective_retry(
    ollama: FakeOllama, tmp_path: Path
) -> None:
    ollama.enqueue(Reply(data={**DESCRIPTION, "subject": "赤いキツネ"}), Reply(data=DESCRIPTION))
    cap = captioner(ollama, tmp_path)
    desc = await cap.describe(gradient(64, 64))
    assert desc.subject == "a red fox sitting"
    assert cap.counter.by_purpose["caption"] == 2
    retry = ollama.last_chat()["messages"]
    assert "English" in retry[-1]["content"] and sent_images({"messages": retry})


@pytest.mark.ollama(models=[FakeModel("llama3.2:3b", ["completion", "tools"])])
async def test_model_without_vision_names_one_to_pull(ollama: FakeOllama, tmp_path: Path) -> None:
    cap = captioner(ollama, tmp_path, model="llama3.2:3b")
    with pytest.raises(CapabilityMissing) as err:
        await cap.describe(gradient(64, 64))
    assert not ollama.chat_requests()  # nothing sent to a model that can't see
    assert "`llama3.2:3b` can't see images" in str(err.value)
    assert "ollama pull qwen3-vl:8b" in str(err.value)
    ja = err.value.localized("ja")
    assert "ollama pull qwen3-vl:8b" in ja and "視覚モデル" in ja


async def test_from_settings_uses_the_vision_model(ollama: FakeOllama, tmp_path: Path) -> None:
    ollama.add_model(FakeModel("gemma3:4b", ["completion", "vision"]))
    s = settings_for(ollama, tmp_path, vision_model="gemma3:4b")
    cap = OllamaCaptioner.from_settings(s)
    ollama.enqueue(Reply(data=DESCRIPTION))
    await cap.describe(gradient(32, 32))
    assert cap.model_name == "gemma3:4b" and ollama.last_chat()["model"] == "gemma3:4b"


def test_prompts_a_vision_model_writes_keep_only_syntax_the_engine_honours() -> None:
    desc = ImageDescription.model_validate({
        "subject": "[a cat|a dog] AND a (red:1.3) ball", "style": "[sketch:photo:0.4]",
        "negative": "<hypernet:x:1>, blurry", "summary": "A (cat) AND a ball."})
    assert desc.prompt == "a cat, a (red:1.3) ball, photo"
    assert desc.negative == "blurry"
    assert desc.summary == "A (cat) AND a ball."  # for the person, not the engine
    proposal = InpaintProposal.model_validate({"prompt": "[moon|sun] (glow:4)", "negative": ""})
    assert proposal.prompt == "moon (glow:1.5)"
