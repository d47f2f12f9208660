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
from vision.grounding.owl_sam import OwlSamSegmenter, distinct, find_folders
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


def test_overlapping_detections_of_one_thing_count_once() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 0, 30, 10]], dtype=np.float32)
    assert distinct(boxes, np.array([0.5, 0.9, 0.3])) == [1, 2]


def test_auto_takes_an_owl_detector_and_sam_from_the_models_folder(settings: Any,
                                                                   tmp_path: Path) -> None:
    models = tmp_path / "segment"
    for name in ("owlvit-base-patch32", "sam-vit-base"):
        (models / name).mkdir(parents=True)
        (models / name / "config.json").write_text("{}")
    seg = make_segmenter(settings.model_copy(update={"segment_models_dir": models}))
    assert isinstance(seg, OwlSamSegmenter)
    assert (seg.detector.name, getattr(seg.sam, "name", None)) == ("owlvit-base-patch32",
                                                                   "sam-vit-base")
    empty = settings.model_copy(update={"segment_models_dir": tmp_path / "none"})
    assert isinstance(make_segmenter(empty), ClipSegSegmenter)
    asked = make_segmenter(empty.model_copy(update={"segmenter": "owl-sam"}))
    with pytest.raises(CapabilityMissing, match="owlv2-base-patch16-ensemble"):
        asked.find(Image.new("RGB", (8, 8)), "hat")


def tiny_owl_and_sam(models: Path) -> None:
    """A random-weight OWL-ViT (32 px) and SAM (64 px) in ``models``, as the hub names them."""
    import torch
    from transformers import (
        OwlViTConfig,
        OwlViTForObjectDetection,
        OwlViTImageProcessor,
        OwlViTProcessor,
        SamConfig,
        SamImageProcessor,
        SamModel,
        SamProcessor,
    )

    from tests.support.tiny_pipelines import _tokenizer

    torch.manual_seed(0)
    layers = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4,
              "num_hidden_layers": 2}
    owl = OwlViTConfig(
        text_config={**layers, "vocab_size": 520, "max_position_embeddings": 16,
                     "bos_token_id": 512, "eos_token_id": 513, "pad_token_id": 513},
        vision_config={**layers, "image_size": 32, "patch_size": 8}, projection_dim=32,
    )  # fmt: skip
    detector = OwlViTForObjectDetection(owl)
    with torch.no_grad():  # boxes = the patch grid's own cells (random ones collapse to a corner)
        detector.box_head.dense2.weight.zero_()
        detector.box_head.dense2.bias.zero_()
    detector.save_pretrained(models / "owlvit-base-patch32")
    tokenizer = _tokenizer()
    tokenizer.model_max_length = 16
    square = {"height": 32, "width": 32}
    OwlViTProcessor(image_processor=OwlViTImageProcessor(size=square, crop_size=square),
                    tokenizer=tokenizer).save_pretrained(models / "owlvit-base-patch32")
    sam = SamConfig(
        vision_config={**layers, "image_size": 64, "patch_size": 8, "output_channels": 16,
                       "window_size": 4, "global_attn_indexes": [1], "mlp_dim": 37,
                       "num_pos_feats": 8},
        prompt_encoder_config={"hidden_size": 16, "image_size": 64, "patch_size": 8,
                               "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": 16, "num_hidden_layers": 2,
                             "num_attention_heads": 2, "mlp_dim": 32, "iou_head_hidden_dim": 16},
    )  # fmt: skip
    SamModel(sam).save_pretrained(models / "sam-vit-base")
    SamProcessor(image_processor=SamImageProcessor(
        size={"longest_edge": 64}, pad_size={"height": 64, "width": 64}),
    ).save_pretrained(models / "sam-vit-base")  # fmt: skip


@pytest.mark.slow
def test_tiny_owl_boxes_refined_by_tiny_sam_run_end_to_end(tmp_path: Path) -> None:
    tiny_owl_and_sam(tmp_path)
    folders = find_folders(tmp_path)
    assert folders is not None
    image = Image.new("RGB", (96, 64), (100, 150, 200))
    for seg in (OwlSamSegmenter(folders[0], threshold=0.0),
                OwlSamSegmenter(*folders, threshold=0.0)):  # fmt: skip
        found = seg.find(image, "a hat")
        assert found, seg.name
        for c in found:
            assert c.mask.size == (96, 64) and set(np.unique(np.asarray(c.mask))) <= {0, 255}
            assert c.mask.getbbox() == c.box
        if seg.sam is None:  # the detector's boxes as they are: one per patch of the 4×4 grid
            assert len(found) == 16
            assert all(c.area == (c.box[2] - c.box[0]) * (c.box[3] - c.box[1]) for c in found)


def test_a_broken_model_folder_is_a_clear_message_not_a_traceback(tmp_path: Path) -> None:
    folder = tmp_path / "owlvit-base-patch32"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "owlvit", "text_config": 7}')
    with pytest.raises(CapabilityMissing) as caught:
        OwlSamSegmenter(folder).find(Image.new("RGB", (32, 32)), "hat")
    assert str(tmp_path) in caught.value.localized("en")
    assert "読み込めません" in caught.value.localized("ja")
