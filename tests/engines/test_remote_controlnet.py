"""ControlNet units reach A1111 (alwayson_scripts) and ComfyUI (ControlNet nodes)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support.fake_remote_servers import FakeComfyUI, ServerThread
from tools.core.errors import EngineError
from tools.core.request import ControlUnit, ImageRequest
from tools.engines.remote.a1111 import A1111Engine
from tools.engines.remote.comfyui import ComfyUIEngine
from tools.engines.remote.comfyui_workflow import default_workflow
from tools.engines.remote.control import add_controlnets


@pytest.fixture
def maps(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "edges.png", tmp_path / "pose.png"
    Image.new("RGB", (100, 80), (255, 255, 255)).save(a)
    Image.new("RGB", (64, 64), (255, 0, 0)).save(b)
    return a, b


def two_units(maps: tuple[Path, Path], **kw: Any) -> ImageRequest:
    return ImageRequest(prompt="a dancer", width=128, height=96, seed=1, controls=[
        ControlUnit(image=maps[0], module="canny"),
        ControlUnit(image=maps[1], module="openpose", model="my_pose_xl", weight=0.6,
                    guidance_start=0.1, guidance_end=0.8),
    ], **kw)


def test_a1111_payload_carries_each_unit_for_the_extension(maps: tuple[Path, Path]) -> None:
    payload = A1111Engine("http://127.0.0.1:9").build_payload(two_units(maps))
    args = payload["alwayson_scripts"]["controlnet"]["args"]
    assert [(a["model"], a["module"], a["weight"], a["guidance_start"], a["guidance_end"])
            for a in args] == [("control_v11p_sd15_canny", "none", 1.0, 0.0, 1.0),
                               ("my_pose_xl", "none", 0.6, 0.1, 0.8)]
    sent = Image.open(io.BytesIO(base64.b64decode(args[0]["image"])))
    assert sent.size == (128, 96)  # the map at the request's size


def test_a1111_payload_without_units_has_no_scripts() -> None:
    payload = A1111Engine("http://127.0.0.1:9").build_payload(ImageRequest(prompt="x", seed=1))
    assert "alwayson_scripts" not in payload


@pytest.fixture
def comfy() -> Iterator[tuple[str, FakeComfyUI]]:
    fake = FakeComfyUI()
    server = ServerThread(fake.app())
    try:
        yield server.start(), fake
    finally:
        server.stop()


def test_comfyui_chains_controlnet_apply_nodes_into_the_sampler(
    comfy: tuple[str, FakeComfyUI], maps: tuple[Path, Path]
) -> None:
    url, fake = comfy
    ComfyUIEngine(url, checkpoint="v1-5-pruned-emaonly.safetensors").generate(two_units(maps))
    wf = fake.prompts[0]
    applies = {k: n for k, n in wf.items() if n["class_type"] == "ControlNetApplyAdvanced"}
    loaders = [n["inputs"]["control_net_name"] for n in wf.values()
               if n["class_type"] == "ControlNetLoader"]
    assert loaders == ["control_v11p_sd15_canny.safetensors", "my_pose_xl.safetensors"]
    first, second = sorted(applies, key=int)
    assert applies[first]["inputs"]["positive"] == ["6", 0]  # the prompt's conditioning
    assert applies[second]["inputs"]["positive"] == [first, 0]  # chained
    assert applies[second]["inputs"]["strength"] == 0.6
    assert applies[second]["inputs"]["end_percent"] == 0.8
    sampler = next(n for n in wf.values() if n["class_type"] == "KSampler")
    assert sampler["inputs"]["positive"] == [second, 0]
    assert sampler["inputs"]["negative"] == [second, 1]
    images = {wf[a["inputs"]["image"][0]]["inputs"]["image"] for a in applies.values()}
    assert images <= set(fake.uploads) and len(images) == 2


def test_comfyui_workflow_without_a_sampler_is_explained(maps: tuple[Path, Path]) -> None:
    wf, nodes = default_workflow("txt2img")
    del wf[nodes.sampler]
    with pytest.raises(EngineError, match="sampler"):
        add_controlnets(wf, nodes, two_units(maps), ["a.png", "b.png"])
