"""Masks from words: "change the hat on the left to a red beret" → the region found by a
(fake, injected) segmenter → the mask in the painter → inpaint; ambiguity is asked."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from assistant.chat.conversation import Conversation
from assistant.chat.mask_words import PICK_REGION, MaskWordsFlow
from assistant.chat.state import ChatState
from assistant.chat.vision_flow import MASK_ACTION, VisionFlow
from tests.support.fake_chat import ScriptedChatModel
from tests.support.fake_ollama import FakeOllama, Reply
from tests.support.recording_ui import RecordingUI
from tests.support.replies import DESCRIPTION, PROPOSAL, REGION
from tests.vision.test_vision_flow import engine_runner, make_flow, noise, upload_of
from tools.core.errors import CapabilityMissing, InvalidRequest
from tools.core.settings import Settings
from tools.engines.fake import FakeEngine
from tools.llm.chat_models import chat_model_factory
from tools.llm.ollama_gateway import OllamaGateway
from vision.grounding.fixed import FixedSegmenter
from vision.grounding.regions import OUTLINE_COLOURS, Candidate
from vision.uploads import Upload

HAT_LEFT, HAT_RIGHT = (0.1, 0.2, 0.3, 0.5), (0.6, 0.1, 0.9, 0.4)  # fractions of 200×100


def mask_of(props: dict[str, Any], size: tuple[int, int] = (200, 100)) -> np.ndarray:
    """The proposed mask the painter got, at the image's size, as booleans."""
    raw = base64.b64decode(props["mask"].split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("L").resize(size)) >= 128


def box_px(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    return round(box[0] * 200), round(box[1] * 100), round(box[2] * 200), round(box[3] * 100)


def covers_exactly(mask: np.ndarray, *boxes: tuple[float, float, float, float]) -> bool:
    want = np.zeros_like(mask)
    for left, top, right, bottom in map(box_px, boxes):
        want[top:bottom, left:right] = True
    return bool((mask == want).all())


def setup(ollama: FakeOllama, settings: Settings, tmp_path: Path, boxes: list[Any],
          **kw: Any) -> tuple[MaskWordsFlow, VisionFlow, FixedSegmenter, FakeEngine, Upload]:
    engine, seg = FakeEngine(), FixedSegmenter(boxes)
    vision = make_flow(ollama, settings, engine, **kw)
    up = upload_of(tmp_path, vision.settings, noise(200, 100))
    vision.uploads[up.id] = up
    vision.state.inpaint.last_image = up.path
    return MaskWordsFlow(vision, lambda: seg), vision, seg, engine, up


async def test_the_mask_covers_the_named_box_and_accepting_it_inpaints_there(
    ollama: FakeOllama, settings: Settings, tmp_path: Path
) -> None:
    flow, vision, seg, engine, up = setup(ollama, settings, tmp_path, [HAT_LEFT])
    ui = RecordingUI()
    await flow.on_message("Change the hat to a red beret", ui)
    assert seg.phrases == ["hat"]
    text, props = ui.painters[-1]
    assert "hat" in text and props["image_id"] == up.id and props["action"] == MASK_ACTION
    assert props["instruction"] == "a red beret"
    assert covers_exactly(mask_of(props), HAT_LEFT)

    # "Use this mask" as the painter sends it: the proposed mask, the typed instruction
    ollama.enqueue(Reply(data=DESCRIPTION), Reply(data=REGION), Reply(data=PROPOSAL))
    await vision.on_action(MASK_ACTION, {"image_id": up.id, "mask": props["mask"],
                                         "instruction": props["instruction"]}, ui)  # fmt: skip
    request = engine.calls[-1].request
    assert request.init_image == up.path and request.prompt.startswith("a red ceramic mug")
    assert request.mask_image is not None
    with Image.open(request.mask_image) as saved:
        assert covers_exactly(np.asarray(saved.convert("L")) >= 128, HAT_LEFT)
    propose = ollama.chat_requests()[-1]
    assert "a red beret" in propose["messages"][-1]["content"]
    assert "Before" in ui.images[-1][0]


async def test_two_candidates_are_asked_about_with_outlines_and_a_button_each(
    ollama: FakeOllama, settings: Settings, tmp_path: Path
) -> None:
    flow, _vision, _seg, _engine, _up = setup(ollama, settings, tmp_path, [HAT_RIGHT, HAT_LEFT])
    ui = RecordingUI()
    await flow.on_message("change the hat to a red beret", ui)
    assert not ui.painters  # not guessed
    text, [preview], buttons = ui.images[-1]
    assert "2 ×" in text and "Which one" in text
    assert [b.label for b in buttons] == ["#1", "#2", "All of them"]
    assert [b.payload["pick"] for b in buttons] == [1, 2, 0]
    with Image.open(preview) as im:
        px = np.asarray(im.convert("RGB"))
    left, _top, right, bottom = box_px(HAT_LEFT)  # #1 is the left one, in the first colour
    assert tuple(px[bottom - 1, (left + right) // 2]) == OUTLINE_COLOURS[0]
    left, _top, right, bottom = box_px(HAT_RIGHT)
    assert tuple(px[bottom - 1, (left + right) // 2]) == OUTLINE_COLOURS[1]

    await flow.table.dispatch(PICK_REGION.name, buttons[1].payload, ui)  # "#2"
    assert covers_exactly(mask_of(ui.painters[-1][1]), HAT_RIGHT)


async def test_all_of_them_masks_every_candidate_and_a_stale_answer_is_refused(
    ollama: FakeOllama, settings: Settings, tmp_path: Path
) -> None:
    flow, _vision, _seg, _engine, _up = setup(ollama, settings, tmp_path, [HAT_RIGHT, HAT_LEFT])
    ui = RecordingUI()
    await flow.on_message("change the hat to a red beret", ui)
    everything = ui.images[-1][2][-1].payload
    await flow.table.dispatch(PICK_REGION.name, everything, ui)
    assert covers_exactly(mask_of(ui.painters[-1][1]), HAT_LEFT, HAT_RIGHT)
    with pytest.raises(InvalidRequest, match="say the change again"):
        await flow.table.dispatch(PICK_REGION.name, everything, ui)  # answered already


async def test_the_one_on_the_left_is_picked_without_asking(
    ollama: FakeOllama, settings: Settings, tmp_path: Path
) -> None:
    flow, _vision, _seg, _engine, _up = setup(ollama, settings, tmp_path, [HAT_RIGHT, HAT_LEFT],
                                              state=ChatState(lang="ja"))  # fmt: skip
    ui = RecordingUI()
    await flow.on_message("左の帽子を赤いベレー帽に変えて", ui)
    assert not ui.images
    text, props = ui.painters[-1]
    assert "hat" in text and "このマスクを使う" in text
    assert props["instruction"] == "赤いベレー帽" and props["lang"] == "ja"
    assert covers_exactly(mask_of(props), HAT_LEFT)


async def test_the_models_reading_is_used_when_there_is_a_model(
    ollama: FakeOllama, settings: Settings, tmp_path: Path
) -> None:
    flow, _vision, seg, _engine, _up = setup(ollama, settings, tmp_path, [HAT_RIGHT, HAT_LEFT])
    flow.model = ScriptedChatModel().enqueue(
        '{"target": "penguin", "position": "right", "ordinal": null, "replacement": "a dog"}')
    ui = RecordingUI()
    await flow.on_message("ペンギンを犬に変えて", ui)
    assert seg.phrases == ["penguin"]
    assert covers_exactly(mask_of(ui.painters[-1][1]), HAT_RIGHT)


async def test_nothing_found_or_no_model_offers_the_empty_painter_with_the_reason(
    ollama: FakeOllama, settings: Settings, tmp_path: Path
) -> None:
    flow, vision, _seg, _engine, up = setup(ollama, settings, tmp_path, [])
    ui = RecordingUI()
    await flow.on_message("remove the car", ui)
    text, props = ui.painters[-1]
    assert "could not find “car”" in text and "mask" not in props
    assert vision.state.inpaint.awaiting_mask == up.id  # a box or a mask upload also do

    class Offline:
        name = "CLIPSeg"

        def find(self, image: Image.Image, phrase: str) -> list[Candidate]:
            raise CapabilityMissing.of("segment_model_missing", model="CIDAS/clipseg",
                                       folder="/models/clipseg")  # fmt: skip

    flow.segmenter = Offline
    await flow.on_message("remove the car", ui)
    text, props = ui.painters[-1]
    assert "CIDAS/clipseg" in text and "/models/clipseg" in text and "paint" in text
    assert props["instruction"] == "remove the car"


async def test_without_a_picture_it_says_to_bring_one_first(
    ollama: FakeOllama, settings: Settings, tmp_path: Path
) -> None:
    flow, vision, _seg, _engine, _up = setup(ollama, settings, tmp_path, [HAT_LEFT])
    vision.state.inpaint.last_image = None
    assert not flow.wants_message("change the hat to a beret")
    ui = RecordingUI()
    await flow.on_message("change the hat to a beret", ui)
    assert "no picture" in ui.said[-1] and not ui.painters


async def test_the_conversation_routes_an_edit_after_an_upload_and_nothing_else(
    ollama: FakeOllama, settings: Settings, tmp_path: Path
) -> None:
    s = settings.model_copy(update={"ollama_host": ollama.url})
    seg = FixedSegmenter([HAT_LEFT])
    c = Conversation(s, OllamaGateway(s), chat_model_factory(s), [], ChatState.start("en"),
                     runner=engine_runner(FakeEngine(), s.images_dir), segmenter=lambda: seg)
    ui = RecordingUI()
    photo = tmp_path / "hats.png"
    noise(200, 100).save(photo)
    ollama.enqueue(Reply(data=DESCRIPTION))
    await c.on_upload([(photo, "hats.png", "image/png")], ui)
    assert c.state.inpaint.last_image is not None

    ollama.enqueue(Reply(data={"target": "hat", "position": "none", "ordinal": None,
                               "replacement": "a red beret"}))  # fmt: skip
    await c.on_message("Change the hat to a red beret", ui)
    assert seg.phrases == ["hat"] and covers_exactly(mask_of(ui.painters[-1][1]), HAT_LEFT)

    painters = len(ui.painters)
    await c.on_message("draw a cat wearing a hat", ui)  # the studio's, not an edit
    assert seg.phrases == ["hat"] and len(ui.painters) == painters


async def test_a_typed_answer_to_which_one_picks_it(
    ollama: FakeOllama, settings: Settings, tmp_path: Path
) -> None:
    flow, _vision, seg, _engine, _up = setup(ollama, settings, tmp_path, [HAT_RIGHT, HAT_LEFT])
    ui = RecordingUI()
    assert not flow.wants_message("the left one")  # no question open: not an answer
    await flow.on_message("change the hat to a red beret", ui)
    assert flow.wants_message("the left one") and flow.wants_message("右の")
    await flow.on_message("#5", ui)  # there is no fifth: asked again
    assert "Which one" in ui.said[-1] and not ui.painters
    await flow.on_message("the one on the right", ui)
    assert covers_exactly(mask_of(ui.painters[-1][1]), HAT_RIGHT)
    assert ui.painters[-1][1]["instruction"] == "a red beret" and seg.phrases == ["hat"]
    assert not flow.wants_message("the left one")  # answered
