"""The generate_image LangChain tool, driven by the FakeEngine."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from assistant.chat.tooling.image_tool import GenerateImageArgs, make_generate_image_tool
from tools.core.engine import GeneratedImage
from tools.engines.fake import FakeEngine
from tools.engines.jobs import JobQueue
from tools.infotext.png import read_png_parameters
from tools.infotext.text import infotext_to_request, parse_infotext

FIELDS = {"prompt", "negative_prompt", "width", "height", "steps", "cfg_scale", "sampler",
          "seed", "batch_size", "control"}  # fmt: skip


@pytest.fixture
async def queue() -> AsyncIterator[JobQueue]:
    q = JobQueue(FakeEngine())
    yield q
    await q.aclose()


def test_schema_has_described_fields_for_the_model(tmp_path: Path) -> None:
    tool = make_generate_image_tool(FakeEngine(), output_dir=tmp_path)
    assert tool.name == "generate_image"
    assert set(tool.args) == FIELDS
    schema = GenerateImageArgs.model_json_schema()
    assert schema["required"] == ["prompt"]
    assert all(schema["properties"][f].get("description") for f in FIELDS)
    assert "multiple of 8" in schema["properties"]["width"]["description"]


async def test_valid_call_saves_pngs_and_reports_seeds(queue: JobQueue, tmp_path: Path) -> None:
    got: list[tuple[list[GeneratedImage], list[Path]]] = []

    async def on_result(images: list[GeneratedImage], paths: list[Path]) -> None:
        got.append((images, paths))

    tool = make_generate_image_tool(
        queue,
        output_dir=tmp_path / "images",
        defaults={"negative_prompt": "lowres, watermark", "steps": 8},
        on_result=on_result,
    )
    text = await tool.ainvoke(
        {"prompt": "a red fox in snow", "width": 320, "height": 256, "seed": 77, "batch_size": 2}
    )

    assert "seed 77" in text and "seed 78" in text and "320x256" in text
    images, paths = got[0]
    assert [g.seed for g in images] == [77, 78]
    for path in paths:
        assert path.exists() and str(path) in text
        infotext = read_png_parameters(path)
        assert infotext is not None
        req = infotext_to_request(parse_infotext(infotext))
        assert req.prompt == "a red fox in snow"
        assert req.negative_prompt == "lowres, watermark"  # default applied
        assert req.steps == 8 and (req.width, req.height) == (320, 256)
    with Image.open(paths[0]) as im:
        assert im.size == (320, 256)


async def test_invalid_size_returns_a_teaching_message(queue: JobQueue, tmp_path: Path) -> None:
    tool = make_generate_image_tool(queue, output_dir=tmp_path)
    text = await tool.ainvoke({"prompt": "a cat", "width": 500})
    assert "multiple of 8" in text and "try 496 or 504" in text
    assert "call generate_image again" in text
    assert not any(tmp_path.iterdir())


async def test_wrong_types_and_unknown_samplers_also_teach(tmp_path: Path) -> None:
    tool = make_generate_image_tool(FakeEngine(), output_dir=tmp_path)
    typed = await tool.ainvoke({"prompt": "a cat", "steps": "lots"})
    assert "steps" in typed and "Fix them" in typed
    sampler = await tool.ainvoke({"prompt": "a cat", "sampler": "warp drive"})
    assert "Unknown sampler" in sampler and "DPM++ 2M Karras" in sampler


def test_sync_invoke_with_an_engine_and_a_random_seed(tmp_path: Path) -> None:
    results: list[list[GeneratedImage]] = []
    tool = make_generate_image_tool(
        FakeEngine(),
        output_dir=tmp_path,
        on_result=lambda images, paths: results.append(images),
    )
    text = tool.invoke({"prompt": "a lighthouse", "steps": 3})
    match = re.search(r"seed (\d+)", text)
    assert match is not None and int(match.group(1)) == results[0][0].seed
    assert len(list(tmp_path.glob("*.png"))) == 1


def test_syntax_egaki_does_not_honour_is_reported_to_the_model(tmp_path: Path) -> None:
    tool = make_generate_image_tool(FakeEngine(), output_dir=tmp_path)
    text = tool.invoke({"prompt": "a [cat:dog:0.5], (red:1.2) hat", "negative_prompt": "a AND b"})
    assert "plain words (not supported): [cat:dog:0.5], AND. Tell the user" in text
    plain = tool.invoke({"prompt": "a (red:1.2) hat BREAK snow"})
    assert "not supported" not in plain


def test_sync_invoke_through_the_queue(tmp_path: Path) -> None:
    queue = JobQueue(FakeEngine())
    try:
        text = make_generate_image_tool(queue, output_dir=tmp_path).invoke(
            {"prompt": "a boat", "seed": 5, "steps": 2}
        )
    finally:
        queue.close()
    assert "seed 5" in text


def test_defaults_must_be_request_fields(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="colour"):
        make_generate_image_tool(FakeEngine(), output_dir=tmp_path, defaults={"colour": "red"})
