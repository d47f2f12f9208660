"""Control maps: Canny outlines without a model, pose drawing, and the annotator messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tools.core.errors import ModelMissing
from tools.core.settings import Settings
from vision.control.annotators import offline_missing, on_disk, unusable
from vision.control.canny import canny
from vision.control.maps import Preprocessors, draw_openpose


def square(size: int = 64) -> Image.Image:
    arr = np.zeros((size, size, 3), dtype=np.uint8)
    arr[16:48, 16:48] = 255
    return Image.fromarray(arr)


def test_canny_outlines_a_square_with_thin_white_lines() -> None:
    edges = np.asarray(canny(square()).convert("L"))
    assert set(np.unique(edges)) <= {0, 255}
    assert edges[32, 10:22].max() == 255  # the left side is outlined
    assert edges[32, 24:40].max() == 0  # the flat inside is not
    assert edges[0:8].max() == 0  # nor the flat background
    assert (edges[32] == 255).sum() <= 6  # thin: suppressed to a line or two per side


def test_canny_of_a_flat_picture_is_black() -> None:
    flat = Image.new("RGB", (40, 30), (120, 80, 40))
    out = canny(flat)
    assert out.size == (40, 30) and np.asarray(out).max() == 0


def test_canny_needs_ordered_thresholds() -> None:
    with pytest.raises(ValueError, match="low <= high"):
        canny(square(), low=200, high=100)


def test_preprocessors_make_canny_with_nothing_on_disk(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, offline=True)
    out = Preprocessors(settings).make(square(), "canny")
    assert out.mode == "RGB" and np.asarray(out).max() == 255


def test_offline_annotator_says_what_to_fetch_and_where(tmp_path: Path) -> None:
    folder = tmp_path / "annotators"
    settings = Settings(_env_file=None, data_dir=tmp_path, offline=True, annotators_dir=folder,
                        hf_cache_dir=tmp_path / "hf")
    assert not on_disk("depth", settings)
    err = unusable("depth", settings)
    assert isinstance(err, ModelMissing)
    text = err.localized("en")
    assert "depth-anything/Depth-Anything-V2-Small-hf" in text and str(folder) in text
    with pytest.raises(ModelMissing) as raised:
        Preprocessors(settings).make(square(), "openpose")
    assert "usyd-community/vitpose-base-simple" in raised.value.localized("ja")
    lineart = offline_missing("lineart", settings).localized("en")
    assert "sk_model.pth" in lineart and "lineart" in lineart


def test_annotator_found_in_an_a1111_downloads_folder(tmp_path: Path) -> None:
    downloads = tmp_path / "extensions/sd-webui-controlnet/annotator/downloads"
    (downloads / "hed").mkdir(parents=True)
    (downloads / "hed" / "ControlNetHED.pth").write_bytes(b"x")
    settings = Settings(_env_file=None, data_dir=tmp_path, offline=True, annotators_dir=tmp_path,
                        hf_cache_dir=tmp_path / "hf")
    assert on_disk("softedge", settings)
    assert not on_disk("lineart", settings)


def test_pose_is_drawn_openpose_style() -> None:
    keypoints = np.array([[32, 10], [30, 8], [34, 8], [28, 9], [36, 9], [24, 20], [40, 20],
                          [22, 30], [42, 30], [20, 40], [44, 40], [28, 40], [36, 40],
                          [28, 50], [36, 50], [28, 60], [36, 60]], dtype=np.float32)
    scores = np.ones(17, dtype=np.float32)
    scores[15:] = 0.0  # ankles not seen: not drawn
    out = np.asarray(draw_openpose((64, 64), [(keypoints, scores)]))
    assert out[20, 24].tolist() != [0, 0, 0]  # a shoulder
    assert out[62, 28].tolist() == [0, 0, 0]  # no ankle
    assert tuple(out[20, 32]) != (0, 0, 0)  # the neck OpenPose adds between the shoulders


@pytest.mark.slow
def test_depth_runs_a_depth_anything_folder_from_the_annotators_dir(tmp_path: Path) -> None:
    """A tiny random Depth Anything saved as its repo folder: found offline, map made."""
    import torch
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
                            intermediate_size=32, image_size=28, patch_size=14,
                            out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=16,
                                 neck_hidden_sizes=[8, 8, 8, 8], fusion_hidden_size=8,
                                 head_hidden_size=8, patch_size=14)
    folder = tmp_path / "annotators" / "Depth-Anything-V2-Small-hf"
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=True,
                      ensure_multiple_of=14, do_pad=False).save_pretrained(folder)
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", offline=True,
                        annotators_dir=tmp_path / "annotators", hf_cache_dir=tmp_path / "hf")
    assert on_disk("depth", settings) and unusable("depth", settings) is None
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3),
                                                                dtype=np.uint8))
    out = Preprocessors(settings).make(picture, "depth")
    assert out.size == (64, 48) and out.mode == "RGB"
