"""The hires-fix rows of :mod:`benchmarks.speed`: what they ask the engine for and their
overhead against plain txt2img (the ``egaki`` row) at the same first-pass size.

* ``hires``       — hires fix x2 with the ``Latent`` upscaler, half the steps again at
  denoising 0.5 (A1111's usual settings);
* ``hires-esrgan`` — the same with an ESRGAN-shaped upscaler model (random weights, RRDB
  64 filters x 23 blocks, 4x: the compute of Real-ESRGAN / 4x-UltraSharp), tiled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PATHS = ("hires", "hires-esrgan")
ESRGAN_NAME = "bench-esrgan-4x"


def upscalers_dir(workdir: Path, model: str) -> Path:
    """The benchmark's upscaler folder, with its ESRGAN-shaped model built once."""
    folder = workdir / f"upscalers-{model}"
    path = folder / "ESRGAN" / f"{ESRGAN_NAME}.pth"
    if not path.exists():
        import torch

        from tools.engines.upscalers.tiled import import_spandrel

        import_spandrel()
        from spandrel.architectures.ESRGAN import ESRGAN

        torch.manual_seed(0)
        tiny = model == "tiny"
        net = ESRGAN(num_filters=8 if tiny else 64, num_blocks=1 if tiny else 23, scale=4)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), path)
    return folder


def hires_fields(path_name: str, steps: int) -> dict[str, Any]:
    """The request fields a hires row adds ({} for other rows)."""
    if path_name not in PATHS:
        return {}
    upscaler = ESRGAN_NAME if path_name == "hires-esrgan" else "Latent"
    return {"hires": {"scale": 2.0, "upscaler": upscaler, "steps": max(2, steps // 2),
                      "denoising": 0.5}}


def overhead_lines(results: list[dict[str, Any]]) -> list[str]:
    """"hires is 3.4x egaki (+52 s)" for every hires row with an ``egaki`` row beside it."""
    out = []
    for r in results:
        base = next((b for b in results if b["model"] == r["model"] and b["path"] == "egaki"
                     and "seconds" in b), None)
        if r["path"] in PATHS and base and "seconds" in r:
            out.append(f"{r['model']}: {r['path']} ({r['size'] * 2}² final) is "
                       f"{r['seconds'] / base['seconds']:.1f}x egaki "
                       f"(+{r['seconds'] - base['seconds']:.1f} s/img)")
    return out
