"""OpenVINO UNet: a static prompt length vs a dynamic one, per compile.

    python -m benchmarks.openvino_seq                       # SD1.5 UNet, 512², all cores
    python -m benchmarks.openvino_seq --scale 0.5 --size 256 --threads 1   # a quick look

Egaki compiles the OpenVINO UNet once per input shape and keeps at most two compiles
(each holds a copy of the weights). A prompt longer than 75 tokens (or with BREAK) makes
``encoder_hidden_states`` 154, 231… positions long instead of 77. With the length static
in every compile, each length is a compile of its own; with it dynamic, one compile
serves every length. This measures what a dynamic prompt axis costs a step at 77 and at
154 positions, which decided ``UNET_DYNAMIC`` in
``tools/engines/diffusers/openvino/pipeline.py``: static at 77, dynamic beyond.

An SD1.5-shaped UNet (``--scale`` shrinks its widths) with random weights, converted the
way Egaki converts it; calls of both kinds are interleaved so load on the machine hits
both alike. Prints compile seconds and median seconds per UNet call (CFG batch of 2).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def build_unet(scale: float) -> Any:
    import torch
    from diffusers import UNet2DConditionModel

    widths = tuple(max(32, round(c * scale / 32) * 32) for c in (320, 640, 1280, 1280))
    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=widths,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768, attention_head_dim=8,
    ).eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="UNet width factor (1 = SD1.5)")
    p.add_argument("--size", type=int, default=512, help="image side in pixels")
    p.add_argument("--calls", type=int, default=5, help="timed calls per case")
    p.add_argument("--threads", type=int, default=0, help="OpenVINO threads (0 = all)")
    p.add_argument("--precision", default="auto", help="auto, bf16 or f32")
    a = p.parse_args(argv)

    import numpy as np

    from tools.engines.diffusers.openvino.pipeline import UNET_DYNAMIC
    from tools.engines.diffusers.openvino.runtime import (
        OvModel,
        convert,
        pick_precision,
        unet_inputs,
        unet_module,
    )

    precision = pick_precision(a.precision)
    unet = build_unet(a.scale)
    params = sum(p.numel() for p in unet.parameters()) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        ir = Path(tmp) / "unet.xml"
        extra, specs, example = unet_inputs(unet)
        t0 = time.perf_counter()
        convert(unet_module(unet, extra), example, specs, ir)
        print(f"# UNet {params:.0f}M params, {a.size}², {precision}, threads "
              f"{a.threads or 'all'}; converted in {time.perf_counter() - t0:.0f} s", flush=True)
        del unet
        always_dynamic = {i: (axis, -1) for i, (axis, _) in UNET_DYNAMIC.items()}
        models = {"static": OvModel(ir, precision), "dynamic": OvModel(ir, precision,
                                                                       always_dynamic)}
        if a.threads:
            for m in models.values():
                m.core.set_property("CPU", {"INFERENCE_NUM_THREADS": a.threads})
        rng = np.random.default_rng(0)
        side = a.size // 8

        def inputs(seq: int) -> list[Any]:
            return [rng.standard_normal((2, 4, side, side), dtype=np.float32),
                    np.array(999.0, dtype=np.float32),
                    rng.standard_normal((2, seq, 768), dtype=np.float32)]

        cases = [("static", 77), ("dynamic", 77), ("static", 154), ("dynamic", 154)]
        first: dict[tuple[str, int], float] = {}
        for name, seq in cases:  # compile (static: one per length; dynamic: the first only)
            t0 = time.perf_counter()
            models[name](*inputs(seq))
            first[(name, seq)] = time.perf_counter() - t0
        times: dict[tuple[str, int], list[float]] = {c: [] for c in cases}
        for _ in range(a.calls):  # interleaved: load on the machine falls on all alike
            for c in cases:
                feed = inputs(c[1])
                t0 = time.perf_counter()
                models[c[0]](*feed)
                times[c].append(time.perf_counter() - t0)
        print(f"{'case':16} {'first call':>10} {'min':>8} {'median':>8}  all")
        for c in cases:
            runs = times[c]
            print(f"{c[0]:8} {c[1]:3d} pos {first[c]:9.2f}s {min(runs):7.3f}s "
                  f"{statistics.median(runs):7.3f}s  " + " ".join(f"{t:.3f}" for t in runs))
        # min: the run least disturbed by other work on the machine
        for seq in (77, 154):
            s, d = min(times[("static", seq)]), min(times[("dynamic", seq)])
            print(f"dynamic vs static at {seq} positions: {100 * (d / s - 1):+.1f} % (min)")
        s77, s154 = min(times[("dynamic", 77)]), min(times[("dynamic", 154)])
        print(f"154 vs 77 positions (dynamic): {100 * (s154 / s77 - 1):+.1f} % per UNet call")
    return 0


if __name__ == "__main__":
    sys.exit(main())
