"""The "keep this pose / these outlines…" flow after an upload, with a recording runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from assistant.chat.control_flow import KEEP_CONTROL, ControlFlow
from assistant.chat.tooling.image_tool import attach_controls, make_generate_image_tool
from tests.support.recording_ui import RecordingUI
from tools.core.engine import GeneratedImage
from tools.core.errors import InvalidRequest, ModelMissing
from tools.core.request import ImageRequest
from tools.core.settings import Settings
from tools.engines.fake import FakeEngine
from vision.uploads import Upload, load_upload


class Runner:
    """The studio's runner contract; records each request."""

    def __init__(self, out: Path) -> None:
        self.out, self.requests = out, []  # type: ignore[var-annotated]

    async def __call__(self, request: ImageRequest) -> tuple[list[GeneratedImage], list[Path]]:
        self.requests.append(request)
        gen = GeneratedImage(Image.new("RGB", (request.width, request.height)), request, 1,
                             extra={"ControlNet runtime": "PyTorch (the OpenVINO UNet has no "
                                    "ControlNet inputs)"})
        return [gen], [self.out / "x.png"]


@pytest.fixture
def upload(settings: Settings, tmp_path: Path) -> Upload:
    arr = np.zeros((96, 128, 3), dtype=np.uint8)
    arr[24:72, 32:96] = 255
    path = tmp_path / "photo.png"
    Image.fromarray(arr).save(path)
    return load_upload(path, settings, name="photo.png")


async def english(words: str, lang: str) -> str:
    return f"EN({words})"


def flow(settings: Settings, tmp_path: Path, current: str | None = None
         ) -> tuple[ControlFlow, Runner]:
    runner = Runner(tmp_path)
    return ControlFlow(runner, settings, lang=lambda: "en", write_prompt=english,
                       current_prompt=lambda: current), runner


async def test_upload_offers_only_usable_keeps_and_says_why_not_the_others(
    settings: Settings, tmp_path: Path, upload: Upload
) -> None:
    control, _ = flow(settings, tmp_path)
    ui = RecordingUI()
    await control.offer(upload, ui)
    text, buttons = ui.shown[-1]
    assert [b.label for b in buttons] == ["Keep these outlines"]  # offline: no pose/depth model
    assert "Keep this pose" in text and "Depth-Anything-V2-Small-hf" in text


async def test_keep_outlines_shows_the_map_then_draws_under_it(
    settings: Settings, tmp_path: Path, upload: Upload
) -> None:
    control, runner = flow(settings, tmp_path, current="a red sports car, photo")
    ui = RecordingUI()
    await control.offer(upload, ui)
    button = ui.shown[-1][1][0]
    await control.table.dispatch(button.name, button.payload, ui)
    text, (shown,), _ = ui.images[-1]
    assert "outlines" in text
    edges = np.asarray(Image.open(shown).convert("L"))
    assert edges.max() == 255 and edges[48, 64] == 0  # outlines only, not the filled box
    (request,) = runner.requests
    assert request.prompt == "a red sports car, photo"  # the chat's prompt card, as written
    assert "a red sports car, photo" in ui.said[-2]  # said before drawing
    assert request.width > request.height  # the photo's landscape aspect
    (unit,) = request.controls
    assert unit.module == "canny" and unit.image == shown
    assert "PyTorch" in ui.said[-1]  # which runtime ran it, and why


async def test_without_words_it_asks_what_to_draw_and_uses_the_answer(
    settings: Settings, tmp_path: Path, upload: Upload
) -> None:
    control, runner = flow(settings, tmp_path)
    ui = RecordingUI()
    await control.offer(upload, ui)
    await control.table.dispatch(KEEP_CONTROL.name, {"image_id": upload.id, "keep": "outlines"},
                                 ui)
    assert control.wants_message and not runner.requests
    assert "What should I draw" in ui.said[-1]
    await control.on_message("a castle", ui)
    assert not control.wants_message
    assert runner.requests[0].prompt == "EN(a castle)"


async def test_a_bad_keep_payload_is_refused(settings: Settings, tmp_path: Path) -> None:
    control, _ = flow(settings, tmp_path)
    with pytest.raises(InvalidRequest):
        await control.table.dispatch(KEEP_CONTROL.name, {"image_id": "x", "keep": "mood"},
                                     RecordingUI())


async def test_agent_tool_takes_the_pose_or_outlines_of_the_last_upload(
    settings: Settings, tmp_path: Path, upload: Upload
) -> None:
    control, _ = flow(settings, tmp_path)
    engine = FakeEngine()
    tool = make_generate_image_tool(engine, output_dir=tmp_path / "out")
    attach_controls(tool, control.units)
    answer: Any = await tool.ainvoke({"prompt": "a knight", "control": "outlines"})
    assert "There is no uploaded picture" in answer  # nothing uploaded yet
    await control.offer(upload, RecordingUI())
    answer = await tool.ainvoke({"prompt": "a knight", "control": "outlines"})
    assert "Generated 1 image" in answer
    assert engine.calls[-1].request.controls[0].module == "canny"
    answer = await tool.ainvoke({"prompt": "a knight", "control": "pose"})
    assert "vitpose" in answer and len(engine.calls) == 1  # offline: told, nothing drawn
    with pytest.raises(ModelMissing):
        await control.units("pose")
