"""The A1111 and ComfyUI engines against local fake servers (no GPU, no network)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support.fake_remote_servers import FakeA1111, FakeComfyUI, ServerThread
from tools.core.engine import ImageEngine, StepCallback
from tools.core.errors import EngineError, GenerationCancelled
from tools.core.request import ImageRequest, LoraRef
from tools.engines.remote.a1111 import A1111Engine
from tools.engines.remote.comfyui import ComfyUIEngine, NodeMap, comfy_sampler


def _serve(fake: FakeA1111 | FakeComfyUI) -> Iterator[tuple[str, FakeA1111 | FakeComfyUI]]:
    server = ServerThread(fake.app())
    url = server.start()
    try:
        yield url, fake
    finally:
        server.stop()


@pytest.fixture
def a1111() -> Iterator[tuple[str, FakeA1111]]:
    yield from _serve(FakeA1111())  # type: ignore[misc]


@pytest.fixture
def slow_a1111() -> Iterator[tuple[str, FakeA1111]]:
    yield from _serve(FakeA1111(step_time=0.02))  # type: ignore[misc]


@pytest.fixture
def comfy() -> Iterator[tuple[str, FakeComfyUI]]:
    yield from _serve(FakeComfyUI())  # type: ignore[misc]


@pytest.fixture
def slow_comfy() -> Iterator[tuple[str, FakeComfyUI]]:
    yield from _serve(FakeComfyUI(step_time=0.02))  # type: ignore[misc]


@pytest.fixture
def dead_url() -> str:
    """A port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def init_and_mask(tmp_path: Path) -> tuple[Path, Path]:
    init, mask = tmp_path / "init.png", tmp_path / "mask.png"
    Image.new("RGB", (300, 200), (10, 120, 200)).save(init)
    m = Image.new("L", (300, 200), 0)
    m.paste(255, (100, 50, 200, 150))
    m.save(mask)
    return init, mask


def _cancel_after_first_step() -> tuple[threading.Event, list[int], StepCallback]:
    cancel = threading.Event()
    seen: list[int] = []

    def on_step(step: int, total: int, preview: object) -> None:
        seen.append(step)
        cancel.set()

    return cancel, seen, on_step


# --- AUTOMATIC1111 ------------------------------------------------------------------------


def test_engines_satisfy_the_protocol() -> None:
    assert isinstance(A1111Engine("http://x"), ImageEngine)
    assert isinstance(ComfyUIEngine("http://x"), ImageEngine)


def test_a1111_txt2img_maps_request_and_reports_each_seed(a1111: tuple[str, FakeA1111]) -> None:
    url, fake = a1111
    req = ImageRequest(
        prompt="a red fox",
        negative_prompt="blurry",
        width=320,
        height=256,
        steps=12,
        cfg_scale=6.5,
        sampler="DPM++ 2M Karras",
        seed=42,
        batch_size=3,
        loras=[LoraRef(name="detail", weight=0.6)],
    )
    images = A1111Engine(url).generate(req)

    endpoint, body = fake.payloads[0]
    assert endpoint == "txt2img"
    assert body["prompt"] == "a red fox <lora:detail:0.6>"
    assert body["negative_prompt"] == "blurry"
    assert (body["seed"], body["steps"], body["cfg_scale"]) == (42, 12, 6.5)
    assert (body["width"], body["height"], body["batch_size"]) == (320, 256, 3)
    assert body["sampler_name"] == "DPM++ 2M Karras" and body["scheduler"] == "Karras"
    # The grid A1111 prepends is skipped; seeds come from info.all_seeds.
    assert [g.seed for g in images] == [42, 43, 44]
    assert all(g.image.size == (320, 256) for g in images)
    assert images[0].model_hash == "abcdef1234" and images[0].model_name == "fake_sd15"
    assert images[0].extra["Lora hashes"] == "detail: 0123456789ab"
    assert "override_settings" not in body  # no model, no clip skip: the web UI's own


def test_a1111_gets_the_requests_clip_skip_as_a_setting_override() -> None:
    payload = A1111Engine("http://127.0.0.1:9").build_payload(
        ImageRequest(prompt="a (red:1.2) fox BREAK snow", seed=1, clip_skip=2, model="m"))
    assert payload["override_settings"] == {"sd_model_checkpoint": "m",
                                            "CLIP_stop_at_last_layers": 2}
    assert payload["prompt"] == "a (red:1.2) fox BREAK snow"  # A1111 reads the syntax itself


def test_a1111_img2img_sends_init_mask_and_strength(
    a1111: tuple[str, FakeA1111], init_and_mask: tuple[Path, Path]
) -> None:
    url, fake = a1111
    init, mask = init_and_mask
    req = ImageRequest(
        prompt="a boat",
        width=256,
        height=192,
        seed=7,
        init_image=init,
        mask_image=mask,
        strength=0.55,
        sampler="Euler a",
    )
    images = A1111Engine(url).generate(req)

    endpoint, body = fake.payloads[0]
    assert endpoint == "img2img"
    assert body["denoising_strength"] == 0.55
    assert body["inpainting_fill"] == 1  # keep original content under the mask
    assert body["sampler_name"] == "Euler a" and "scheduler" not in body
    assert fake.decoded["init"].size == (256, 192)  # resized to the request size
    assert fake.decoded["mask"].size == (256, 192)
    assert fake.decoded["mask"].convert("L").getpixel((128, 96)) == 255
    assert [g.seed for g in images] == [7]


def test_a1111_progress_is_polled_into_on_step(slow_a1111: tuple[str, FakeA1111]) -> None:
    url, fake = slow_a1111
    steps: list[tuple[int, int]] = []
    A1111Engine(url, poll_interval=0.03).generate(
        ImageRequest(prompt="x", steps=10, seed=1), on_step=lambda s, t, p: steps.append((s, t))
    )
    assert fake.progress_polls > 0
    assert steps and all(t == 10 for _, t in steps)
    assert [s for s, _ in steps] == sorted(s for s, _ in steps)


def test_a1111_cancel_posts_interrupt_and_raises(slow_a1111: tuple[str, FakeA1111]) -> None:
    url, fake = slow_a1111
    cancel, _seen, on_step = _cancel_after_first_step()
    with pytest.raises(GenerationCancelled):
        A1111Engine(url, poll_interval=0.03).generate(
            ImageRequest(prompt="x", steps=50, seed=1),
            on_step=on_step,
            cancel=cancel,
        )
    assert fake.interrupts == 1


def test_a1111_down_says_start_with_api(dead_url: str) -> None:
    with pytest.raises(EngineError) as err:
        A1111Engine(dead_url).generate(ImageRequest(prompt="x"))
    assert "--api" in str(err.value) and dead_url in str(err.value)
    assert "--api" in err.value.localized("ja")


def test_a1111_without_api_flag_is_explained() -> None:
    server = ServerThread(FakeA1111(api_enabled=False).app())
    url = server.start()
    try:
        with pytest.raises(EngineError, match="--api"):
            A1111Engine(url).generate(ImageRequest(prompt="x"))
    finally:
        server.stop()


# --- ComfyUI ------------------------------------------------------------------------------


def _node(wf: dict[str, Any], class_type: str) -> dict[str, Any]:
    return next(n for n in wf.values() if n["class_type"] == class_type)


def test_comfy_sampler_names_map_to_sampler_and_scheduler() -> None:
    assert comfy_sampler("DPM++ 2M Karras") == ("dpmpp_2m", "karras")
    assert comfy_sampler("Euler a") == ("euler_ancestral", "normal")
    with pytest.raises(EngineError, match="PLMS"):
        comfy_sampler("PLMS")


def test_comfyui_txt2img_builds_workflow_and_runs_one_prompt_per_seed(
    comfy: tuple[str, FakeComfyUI],
) -> None:
    url, fake = comfy
    req = ImageRequest(
        prompt="a lighthouse",
        negative_prompt="fog",
        width=320,
        height=192,
        steps=6,
        cfg_scale=5.5,
        sampler="DPM++ 2M Karras",
        seed=100,
        batch_size=2,
        loras=[LoraRef(name="film", weight=0.4)],
    )
    steps: list[tuple[int, int]] = []
    images = ComfyUIEngine(url).generate(req, on_step=lambda s, t, p: steps.append((s, t)))

    assert len(fake.prompts) == 2
    first = fake.prompts[0]
    ks = _node(first, "KSampler")["inputs"]
    assert (ks["sampler_name"], ks["scheduler"]) == ("dpmpp_2m", "karras")
    assert (ks["steps"], ks["cfg"], ks["denoise"]) == (6, 5.5, 1.0)
    assert [_node(p, "KSampler")["inputs"]["seed"] for p in fake.prompts] == [100, 101]
    latent = _node(first, "EmptyLatentImage")["inputs"]
    assert (latent["width"], latent["height"], latent["batch_size"]) == (320, 192, 1)
    texts = [n["inputs"]["text"] for n in first.values() if n["class_type"] == "CLIPTextEncode"]
    assert texts == ["a lighthouse", "fog"]
    assert _node(first, "CheckpointLoaderSimple")["inputs"]["ckpt_name"] == (
        "v1-5-pruned-emaonly.safetensors"  # discovered through /object_info
    )
    lora = _node(first, "LoraLoader")["inputs"]
    assert lora["lora_name"] == "film.safetensors" and lora["strength_model"] == 0.4
    assert fake.client_ids[0] and fake.client_ids[0] == fake.client_ids[1]

    assert [g.seed for g in images] == [100, 101]
    assert all(g.image.size == (320, 192) for g in images)
    assert images[0].image.getpixel((0, 0)) != images[1].image.getpixel((0, 0))
    assert steps[-1] == (12, 12) and len(steps) == 12


def test_comfyui_inpaint_uploads_init_and_mask(
    comfy: tuple[str, FakeComfyUI], init_and_mask: tuple[Path, Path]
) -> None:
    url, fake = comfy
    init, mask = init_and_mask
    req = ImageRequest(
        prompt="a boat",
        width=256,
        height=192,
        seed=3,
        init_image=init,
        mask_image=mask,
        strength=0.6,
    )
    images = ComfyUIEngine(url, checkpoint="v1-5-pruned-emaonly.safetensors").generate(req)

    wf = fake.prompts[0]
    assert len(fake.uploads) == 2
    assert _node(wf, "LoadImage")["inputs"]["image"] in fake.uploads
    assert _node(wf, "LoadImageMask")["inputs"]["image"] in fake.uploads
    assert _node(wf, "KSampler")["inputs"]["denoise"] == 0.6
    assert "SetLatentNoiseMask" in {n["class_type"] for n in wf.values()}
    assert images[0].image.size == (256, 192)


def test_comfyui_custom_workflow_uses_the_node_map(comfy: tuple[str, FakeComfyUI]) -> None:
    url, fake = comfy
    # The shape of ComfyUI's script_examples/websockets_api_example.py graph.
    workflow: dict[str, Any] = {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "cfg": 8,
                "denoise": 1,
                "latent_image": ["5", 0],
                "model": ["4", 0],
                "negative": ["7", 0],
                "positive": ["6", 0],
                "sampler_name": "euler",
                "scheduler": "normal",
                "seed": 8566257,
                "steps": 20,
            },
        },
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
        },
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"batch_size": 1, "height": 512, "width": 512},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "old"}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["4", 1], "text": "old"}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x", "images": ["8", 0]}},
    }
    nodes = NodeMap(positive="6", negative="7", sampler="3", latent="5", output="9")
    req = ImageRequest(prompt="a man", steps=4, seed=5, sampler="Euler a", width=384)
    images = ComfyUIEngine(url, workflow=workflow, node_map=nodes).generate(req)

    sent = fake.prompts[0]
    assert sent["6"]["inputs"]["text"] == "a man"
    assert sent["3"]["inputs"]["seed"] == 5 and sent["3"]["inputs"]["steps"] == 4
    assert sent["3"]["inputs"]["sampler_name"] == "euler_ancestral"
    assert sent["5"]["inputs"]["width"] == 384
    assert workflow["6"]["inputs"]["text"] == "old"  # the user's template is untouched
    assert images[0].image.size == (384, 512)

    with pytest.raises(EngineError, match="no such node"):
        ComfyUIEngine(
            url, workflow=workflow, node_map=NodeMap(positive="66", sampler="3")
        ).generate(req)


def test_comfyui_execution_error_becomes_engine_error() -> None:
    server = ServerThread(FakeComfyUI(fail_with="CUDA out of memory").app())
    url = server.start()
    try:
        with pytest.raises(EngineError, match="CUDA out of memory") as err:
            ComfyUIEngine(url).generate(ImageRequest(prompt="x", steps=2, seed=1))
        assert "KSampler" in str(err.value)
    finally:
        server.stop()


def test_comfyui_rejected_workflow_names_the_node(comfy: tuple[str, FakeComfyUI]) -> None:
    url, _ = comfy
    with pytest.raises(EngineError, match="ckpt_name") as err:
        ComfyUIEngine(url, checkpoint="missing.safetensors").generate(ImageRequest(prompt="x"))
    assert "CheckpointLoaderSimple" in str(err.value)


def test_comfyui_cancel_interrupts_the_prompt(slow_comfy: tuple[str, FakeComfyUI]) -> None:
    url, fake = slow_comfy
    cancel, seen, on_step = _cancel_after_first_step()
    with pytest.raises(GenerationCancelled):
        ComfyUIEngine(url).generate(
            ImageRequest(prompt="x", steps=50, seed=1),
            on_step=on_step,
            cancel=cancel,
        )
    [queued] = fake.queue_deletes  # the prompt is taken off the queue, once
    assert fake.interrupts == [{"prompt_id": queued}]  # and that same prompt interrupted
    assert seen == [1]


def test_comfyui_down_is_an_actionable_engine_error(dead_url: str) -> None:
    with pytest.raises(EngineError) as err:
        ComfyUIEngine(dead_url).generate(ImageRequest(prompt="x"))
    assert "EGAKI_COMFYUI_URL" in str(err.value) and "ComfyUI" in err.value.localized("ja")


def test_comfyui_custom_workflow_requires_a_node_map() -> None:
    with pytest.raises(EngineError, match="node map"):
        ComfyUIEngine("http://x", workflow={"1": {}})
