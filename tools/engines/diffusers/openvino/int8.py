"""Optional int8 UNet for OpenVINO, quantized once per model on real denoising inputs.

Post-training quantization (nncf) of weights and activations makes a 512² UNet step on
two AVX-512 cores about 1.6x faster than bf16, at some loss of fidelity, so it is opt-in
(``EGAKI_OPENVINO_INT8``). Calibration denoises the prompts in
``prompts/calibration.yaml`` for a few steps with the float OpenVINO UNet, keeps an even
spread of the UNet inputs it saw, and quantizes on those. The result is saved next to
the float IR and reused; a failure is remembered and leaves the float model in use.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prompts.loader import load_yaml
from tools.engines.diffusers.openvino.runtime import OvRoute, import_openvino

log = logging.getLogger(__name__)



def native_size(pipe: Any) -> int:
    """The size the model was trained at (UNet sample size x VAE scale: 512 for SD1.x,
    768 for SD2.x-768, 1024 for SDXL): calibration sees the activations of real use."""
    sample = int(getattr(pipe.unet.config, "sample_size", 64) or 64)
    return sample * int(getattr(pipe, "vae_scale_factor", 8) or 8)


def capture_inputs(pipe: Any, route: OvRoute, size: int) -> list[list[Any]]:
    """Run the calibration prompts and return the UNet inputs OpenVINO received."""
    import torch

    cal = load_yaml("calibration.yaml")
    seen: list[list[Any]] = []
    accepts = route.accepts

    def tap(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | None:
        feed = accepts(args, kwargs)
        if feed is not None:
            seen.append([a.copy() for a in feed])
        return feed

    route.accepts = tap
    try:
        for i, prompt in enumerate(cal["prompts"]):
            pipe(prompt=prompt, negative_prompt=cal["negative"], width=size, height=size,
                 num_inference_steps=int(cal["steps"]), guidance_scale=float(cal["cfg_scale"]),
                 generator=torch.Generator("cpu").manual_seed(i), output_type="latent")
    finally:
        route.accepts = accepts
    want = int(cal["samples"])
    if len(seen) > want:  # an even spread over prompts and steps
        seen = [seen[round(i * (len(seen) - 1) / (want - 1))] for i in range(want)]
    return seen


def quantize(model: Any, samples: list[list[Any]], target: Path) -> None:
    """Quantize ``model`` (an ``ov.Model``) on ``samples`` and save it at ``target``."""
    import nncf

    ov = import_openvino()
    static = model.clone()
    static.reshape({i: list(a.shape) for i, a in enumerate(samples[0])})
    quantized = nncf.quantize(
        static, nncf.Dataset(samples), subset_size=len(samples),
        model_type=nncf.ModelType.TRANSFORMER, fast_bias_correction=True,
    )
    # back to the float model's dynamic shapes: quantize nodes don't depend on them
    quantized.reshape({i: p.get_partial_shape() for i, p in enumerate(model.inputs)})
    tmp = target.with_name(f".{target.stem}.{time.monotonic_ns()}.xml")
    ov.save_model(quantized, str(tmp))
    tmp.with_suffix(".bin").replace(target.with_suffix(".bin"))
    tmp.replace(target)


def ensure_int8(pipe: Any, route: OvRoute, float_ir: Path,
                on_status: Callable[[str], None] | None) -> Path | None:
    """The int8 IR beside ``float_ir``, building it first if needed; None if impossible."""
    target = float_ir.with_name("unet_int8.xml")
    failed = float_ir.with_name("int8_failed.txt")
    if target.exists():
        return target
    if failed.exists():
        log.info("int8 UNet skipped: it failed before (%s)", failed.read_text().strip()[:200])
        return None
    if int(pipe.unet.config.in_channels) != 4:
        log.info("int8 UNet skipped: inpainting models can't be calibrated from text alone")
        return None
    if on_status is not None:
        on_status("unet-int8")
    started = time.monotonic()
    try:
        samples = capture_inputs(pipe, route, native_size(pipe))
        if not samples:
            raise RuntimeError("the calibration runs never reached the OpenVINO UNet")
        quantize(route.model.model, samples, target)
    except Exception as err:  # an optimisation, never a failure
        reason = f"{type(err).__name__}: {str(err).strip()[:500]}"
        log.warning("int8 quantization failed; the float UNet stays (%s)", reason)
        failed.write_text(reason + "\n", encoding="utf-8")
        return None
    log.info("int8 UNet ready in %.0f s -> %s", time.monotonic() - started, target)
    return target
