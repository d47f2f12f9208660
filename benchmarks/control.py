"""The ``control`` row of :mod:`benchmarks.speed`: what one ControlNet costs per image.

A ControlNet shaped like the model's own (``ControlNetModel.from_unet``: the encoder half
of the UNet plus its zero convolutions, random weights, same compute as a real one) is
built once into the work dir. Plain txt2img and the same request under one Canny unit run
interleaved on one engine as configured by default, so drift hits both alike. On a CPU the
default runtime is OpenVINO, which a ControlNet job leaves for PyTorch (its UNet has no
residual inputs): the overhead then includes that switch, and the row says which runtime
ran each side.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

PROMPT = "two women playing beach volleyball on a sunny beach, photo"


def ensure_controlnet(model_dir: Path, out: Path) -> Path:
    """A random-weight ControlNet for ``model_dir``'s UNet, saved once under ``out``."""
    if (out / "config.json").is_file():
        return out
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet")
    small = unet.config.block_out_channels[0] < 32  # the tiny test model
    net = ControlNetModel.from_unet(
        unet, conditioning_embedding_out_channels=(4, 8, 8, 8) if small else (16, 32, 96, 256))
    net.save_pretrained(out)
    return out


def control_map(size: int, path: Path) -> Path:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (size, size))
    ImageDraw.Draw(im).rectangle([size // 4, size // 4, 3 * size // 4, 3 * size // 4],
                                 outline=(255, 255, 255), width=max(1, size // 128))
    im.save(path)
    return path


def control_overhead(model_dir: Path, taesd: Path, size: int, steps: int, repeat: int,
                     warmup: int) -> dict[str, Any]:
    """Seconds per image without and with one ControlNet, and the engine's runtime note."""
    from tools.core.request import ControlUnit, ImageRequest
    from tools.core.settings import Settings
    from tools.engines.diffusers.engine import DiffusersEngine

    nets = model_dir.parent / f"{model_dir.name}-controlnets"
    net = ensure_controlnet(model_dir, nets / "bench_canny")
    settings = Settings(_env_file=None, data_dir=model_dir.parent / "egaki-data",  # type: ignore[call-arg]
                        image_model=str(model_dir), offline=True, tiny_vae_model=str(taesd),
                        controlnet_dir=nets)
    engine = DiffusersEngine(settings, preview_every=0)
    unit = ControlUnit(image=control_map(size, nets / f"map-{size}.png"), module="canny",
                       model=net.name)
    extra: dict[str, str] = {}

    def image(control: bool) -> float:
        req = ImageRequest(prompt=PROMPT, width=size, height=size, steps=steps, cfg_scale=7.0,
                           seed=1, controls=[unit] if control else [])
        t0 = time.perf_counter()
        out = engine.generate(req)
        if control:
            extra.update(out[0].extra)
        return time.perf_counter() - t0

    t_load = time.perf_counter()
    image(False)
    image(True)  # load (and convert) both outside the timed runs
    load_s = time.perf_counter() - t_load
    for _ in range(warmup):
        image(False)
        image(True)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeat):
        for control in (False, True):
            seconds[control].append(image(control))
    plain, ruled = statistics.median(seconds[False]), statistics.median(seconds[True])
    loaded = engine.cache.current
    plain_runtime = "openvino" if loaded is not None and loaded.openvino is not None else "torch"
    return {"seconds": ruled, "seconds_plain": plain, "all_seconds": seconds[True],
            "all_seconds_plain": seconds[False], "it_per_s": steps / ruled,
            "runtime_plain": plain_runtime,
            "runtime_control": extra.get("ControlNet runtime") or plain_runtime,
            "load_s": load_s, "peak_gib": 0.0, "peak_kind": "not measured"}


def control_row(r: dict[str, Any]) -> str:
    extra = r["seconds"] - r["seconds_plain"]
    return (f"{r['model']:5} control {r['size']}² {r['steps']:3d} steps  plain "
            f"{r['seconds_plain']:.2f} s/img ({r['runtime_plain']}), one ControlNet "
            f"{r['seconds']:.2f} s/img ({r['runtime_control']}): {extra:+.2f} s "
            f"({100 * extra / r['seconds_plain']:+.1f} %)")
