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
