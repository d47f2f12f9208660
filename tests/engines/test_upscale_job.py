""""Upscale ×2" as one queued job: the upscaler model enlarges the init image inside the
engine's job (tiny SD1.5 pipeline, tiny 2× ESRGAN), and remote engines send the picture
enlarged the same way."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.support.tiny_pipelines import TinyModels, make_tiny_settings
from tests.support.tiny_upscaler import build_tiny_esrgan
from tools.core.errors import InvalidRequest
from tools.core.events import StepProgress
from tools.core.request import ImageRequest, parse_request
from tools.engines.diffusers.engine import DiffusersEngine
from tools.engines.jobs import JobQueue
from tools.engines.remote.a1111 import A1111Engine
from tools.engines.remote.init_image import init_picture
from tools.infotext.text import format_infotext


def test_an_init_upscaler_needs_an_init_image_and_a_plain_name() -> None:
    with pytest.raises(InvalidRequest, match="needs one"):
        parse_request({"prompt": "x", "init_upscaler": "4x-UltraSharp"})
    with pytest.raises(InvalidRequest, match="no paths"):
        parse_request({"prompt": "x", "init_image": "/a.png", "init_upscaler": "../up"})
    ok = parse_request({"prompt": "x", "init_image": "/a.png", "init_upscaler": "R-ESRGAN 4x+"})
    assert ok.init_upscaler == "R-ESRGAN 4x+"


def test_remote_engines_send_a_lanczos_init_when_no_model_is_named(tmp_path: Path) -> None:
    source = tmp_path / "last.png"
    noisy(32, 40).save(source)
    plain = ImageRequest(prompt="x", width=64, height=80, init_image=source)
    assert init_picture(plain, None).size == (64, 80)
    nearest = plain.model_copy(update={"init_upscaler": "Nearest"})
    assert init_picture(nearest, None).getpixel((1, 1)) == noisy(32, 40).getpixel((0, 0))
    with pytest.raises(InvalidRequest, match="Lanczos"):
        init_picture(plain.model_copy(update={"init_upscaler": "4x-Missing"}), tmp_path)


def noisy(w: int, h: int) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def engine(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> DiffusersEngine:
    data = tmp_path_factory.mktemp("upscale-data")
    build_tiny_esrgan(data / "upscalers" / "ESRGAN" / "tiny-2x.pth")
    settings = make_tiny_settings(data, tiny_models, upscalers_dir=data / "upscalers")
    return DiffusersEngine(settings, preview_every=0)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "last.png"
    noisy(32, 32).save(path)
    return path


def upscale_request(source: Path, **over: Any) -> ImageRequest:
    values: dict[str, Any] = {"prompt": "a castle", "width": 64, "height": 64, "steps": 3,
                              "seed": 3, "strength": 0.35, "init_image": source,
                              "init_upscaler": "tiny-2x"}
    return ImageRequest(**{**values, **over})


class Spy:
    """Wraps the engine's upscaler call: where and when it ran."""

    def __init__(self, engine: DiffusersEngine, delay: float = 0.0) -> None:
        self.engine, self.delay, self.real = engine, delay, engine._upscale_with
        self.calls: list[tuple[str, bool, float, float]] = []

    def __call__(self, path: Path, image: Image.Image, scale: float) -> Image.Image:
        t0 = time.monotonic()
        out = self.real(path, image, scale)
        time.sleep(self.delay)
        locked = self.engine._run_lock.locked()
        self.calls.append((threading.current_thread().name, locked, t0, time.monotonic()))
        return out


@pytest.mark.slow
def test_the_upscale_runs_in_the_engines_job_and_is_recorded(
    engine: DiffusersEngine, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(engine)
    monkeypatch.setattr(engine, "_upscale_with", spy)
    [g] = engine.generate(upscale_request(source))
    assert g.image.size == (64, 64) and g.request.init_upscaler == "tiny-2x"
    assert [locked for _, locked, *_ in spy.calls] == [True]  # under the run lock
    assert "Init upscaler: tiny-2x" in format_infotext(g)
    with pytest.raises(InvalidRequest, match="tiny-2x"):  # before any weights load
        engine.generate(upscale_request(source, init_upscaler="4x-Missing"))


@pytest.mark.slow
async def test_a_job_behind_the_upscale_waits_for_it_and_a_cancel_before_it_starts_drops_it(
    engine: DiffusersEngine, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(engine, delay=0.3)
    monkeypatch.setattr(engine, "_upscale_with", spy)
    queue = JobQueue(engine)
    steps: list[float] = []

    async def on_event(event: object) -> None:
        if isinstance(event, StepProgress):
            steps.append(time.monotonic())

    try:
        first = queue.enqueue(upscale_request(source))
        second = queue.enqueue(ImageRequest(prompt="a tree", width=64, height=64, steps=2,
                                            seed=4), on_event=on_event)
        dropped = queue.enqueue(upscale_request(source, seed=5))
        assert dropped.cancel()  # still waiting: it never runs
        await asyncio.wait_for(asyncio.gather(first.result(), second.result()), 120)
        with pytest.raises(Exception, match="cancel"):
            await dropped.result()
    finally:
        await queue.aclose()
    [(thread, locked, _, upscale_end)] = spy.calls  # once: the cancelled job's never ran
    assert thread == "egaki-image-worker" and locked
    assert steps and min(steps) > upscale_end  # the job behind it started after it


@pytest.mark.slow
def test_a1111_gets_the_picture_enlarged_by_the_model_here(
    engine: DiffusersEngine, source: Path
) -> None:
    up = engine.settings.upscalers_dir
    request = upscale_request(source)
    payload = A1111Engine("http://127.0.0.1:9", upscalers_dir=up).build_payload(request)
    sent = Image.open(io.BytesIO(base64.b64decode(payload["init_images"][0])))
    lanczos = Image.open(source).convert("RGB").resize((64, 64), Image.Resampling.LANCZOS)
    assert sent.size == (64, 64) and payload["denoising_strength"] == 0.35
    assert np.asarray(sent).tolist() != np.asarray(lanczos).tolist()  # the model's, not Lanczos
    assert np.asarray(sent).tolist() == np.asarray(init_picture(request, up)).tolist()
