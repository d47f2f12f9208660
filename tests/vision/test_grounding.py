"""Regions from words: heat maps cut into candidates, picking by position, the outlined
preview, CLIPSeg from a folder (a tiny random-weight model) and its offline message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tools.core.errors import CapabilityMissing
from vision.grounding.clipseg import ClipSegSegmenter
from vision.grounding.factory import make_segmenter
from vision.grounding.fixed import FixedSegmenter
from vision.grounding.regions import (
    OUTLINE_COLOURS,
    Candidate,
    box_candidate,
    components,
    outlined,
    pick,
    union,
)

SIZE = (200, 100)


def boxes(found: list[Candidate]) -> list[tuple[int, int, int, int]]:
    return [c.box for c in found]


def test_a_heat_map_with_two_blobs_gives_two_candidates_at_the_image_size() -> None:
    heat = np.zeros((50, 100), dtype=np.float32)
    heat[10:30, 5:25] = 0.9  # left blob, 20×20
    heat[5:45, 60:90] = 0.8  # right blob, bigger
    heat[48, 98] = 0.95  # one-pixel speck: noise
    found = components(heat, SIZE, threshold=0.5)
    assert boxes(found) == [(120, 10, 180, 90), (10, 20, 50, 60)]  # biggest first
    assert all(c.mask.size == SIZE for c in found)
    assert found[0].score == pytest.approx(0.8)
    assert components(heat, SIZE, threshold=0.99) == []


LEFT, MIDDLE, RIGHT = (0, 40, 40, 80), (80, 0, 120, 30), (150, 50, 200, 100)


@pytest.mark.parametrize(
    ("position", "ordinal", "expected"),
    [
        ("left", None, [LEFT]),
        ("right", None, [RIGHT]),
        ("top", None, [MIDDLE]),
        ("bottom", None, [RIGHT]),
        ("biggest", None, [RIGHT]),
        ("smallest", None, [MIDDLE]),
        ("center", None, [MIDDLE]),
        ("none", 2, [MIDDLE]),  # "the second one": counted from the left
        ("right", 1, [RIGHT]),  # "the first from the right"
        ("none", 5, []),  # there is no fifth
        ("all", None, [LEFT, MIDDLE, RIGHT]),
        ("none", None, [LEFT, MIDDLE, RIGHT]),  # nothing said: all, for the question
    ],
)
def test_position_words_pick_the_candidate_they_point_at(
    position: Any, ordinal: int | None, expected: list[tuple[int, int, int, int]]
) -> None:
    found = [box_candidate(SIZE, b) for b in (RIGHT, LEFT, MIDDLE)]
    assert boxes(pick(found, position, ordinal)) == expected


def test_union_covers_every_chosen_candidate() -> None:
    mask = np.asarray(union([box_candidate(SIZE, LEFT), box_candidate(SIZE, RIGHT)]))
    assert mask[50, 10] == 255 and mask[60, 160] == 255 and mask[10, 100] == 0


def test_the_preview_outlines_each_candidate_in_its_own_colour() -> None:
    image = Image.new("RGB", SIZE, (128, 128, 128))
    preview = np.asarray(outlined(image, [box_candidate(SIZE, LEFT), box_candidate(SIZE, RIGHT)]))
    assert tuple(preview[79, 20]) == OUTLINE_COLOURS[0]  # the left box's bottom edge
    assert tuple(preview[99, 175]) == OUTLINE_COLOURS[1]  # the right box's bottom edge
    assert tuple(preview[10, 100]) == (128, 128, 128)  # elsewhere: the picture


def test_the_fixed_segmenter_answers_its_boxes_for_any_phrase() -> None:
    seg = FixedSegmenter([(0.0, 0.0, 0.5, 1.0)])
    [found] = seg.find(Image.new("RGB", SIZE), "hat")
    assert found.box == (0, 0, 100, 100) and seg.phrases == ["hat"]


def test_offline_without_the_model_says_what_to_fetch_and_where(settings: Any,
                                                                tmp_path: Path) -> None:
    models = tmp_path / "segment"
    seg = make_segmenter(settings.model_copy(update={
        "offline": True, "segment_models_dir": models, "hf_cache_dir": tmp_path / "hf"}))
    assert isinstance(seg, ClipSegSegmenter)
    with pytest.raises(CapabilityMissing) as caught:
        seg.find(Image.new("RGB", (64, 64)), "hat")
    en, ja = caught.value.localized("en"), caught.value.localized("ja")
    for text in (en, ja):
        assert "CIDAS/clipseg-rd64-refined" in text
        assert str(models / "clipseg-rd64-refined") in text
    assert "offline" in en and "オフライン" in ja


def tiny_clipseg(folder: Path) -> Path:
    """A random-weight CLIPSeg (32 px input, 2 layers) with a byte-level tokenizer."""
    import torch
    from transformers import (
        CLIPSegConfig,
        CLIPSegForImageSegmentation,
        CLIPSegProcessor,
        ViTImageProcessor,
    )

    from tests.support.tiny_pipelines import _tokenizer

    torch.manual_seed(0)
    layers = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4,
              "num_hidden_layers": 2}
    config = CLIPSegConfig(
        text_config={**layers, "vocab_size": 520, "max_position_embeddings": 77,
                     "bos_token_id": 512, "eos_token_id": 513, "pad_token_id": 513},
        vision_config={**layers, "image_size": 32, "patch_size": 8},
        projection_dim=16, extract_layers=[0, 1], reduce_dim=16,
        decoder_num_attention_heads=2, decoder_intermediate_size=32,
    )  # fmt: skip
    CLIPSegForImageSegmentation(config).save_pretrained(folder)
    processor = CLIPSegProcessor(
        image_processor=ViTImageProcessor(size={"height": 32, "width": 32}),
        tokenizer=_tokenizer(),
    )
    processor.save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_a_tiny_clipseg_in_the_models_folder_finds_regions_end_to_end(tmp_path: Path) -> None:
    models = tmp_path / "segment"
    tiny_clipseg(models / "clipseg-rd64-refined")
    seg = ClipSegSegmenter(offline=True, models_dir=models, threshold=0.0)
    image = Image.new("RGB", (96, 64), (200, 100, 50))
    heat = seg.heat(image, "a hat")
    assert heat.shape == (32, 32) and 0.0 <= heat.min() <= heat.max() <= 1.0
    found = seg.find(image, "a hat")
    assert found, "random weights still light up some of the picture"
    for c in found:
        assert c.mask.size == (96, 64) and set(np.unique(np.asarray(c.mask))) <= {0, 255}
    assert all(c.mask.getbbox() == c.box for c in found)
