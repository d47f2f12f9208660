"""Four quick previews of one prompt: one batch of four, or four single images?

    python -m benchmarks.preview_batch --models tiny
    python -m benchmarks.preview_batch --models sd15 --fast-steps 1

Both use Egaki's fast path (fast LoRA fused into the OpenVINO UNet on a CPU, TAESD).
A batch encodes the prompt once and runs each step on four latents together; four
singles encode it four times and run four batch-1 steps. Timed interleaved after a
warm-up (compiles for both shapes), so drift in a shared machine's speed hits both;
the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from benchmarks.speed import PROMPT, SIZES, ensure_models


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="tiny", help="tiny or sd15")
    p.add_argument("--fast-steps", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workdir", type=Path, default=Path.home() / ".cache" / "egaki-bench")
    a = p.parse_args(argv)

    from tools.core.request import ImageRequest
    from tools.core.settings import Settings
    from tools.engines.diffusers.engine import DiffusersEngine

    model = a.models
    dirs = ensure_models(a.workdir, [model])
    settings = Settings(_env_file=None, data_dir=dirs[model].parent / "egaki-data",  # type: ignore[call-arg]
                        image_model=str(dirs[model]), offline=True,
                        tiny_vae_model=str(dirs["taesd"]), measure_machine=False,
                        fast_lora=str(dirs[f"{model}-lcm-lora"]))
    engine = DiffusersEngine(settings, preview_every=0)
    size = SIZES[model]

    def batch() -> float:
        t0 = time.perf_counter()
        engine.generate(ImageRequest(prompt=PROMPT, width=size, height=size, seed=1,
                                     steps=a.fast_steps, cfg_scale=1.0, fast=True,
                                     batch_size=4))
        return time.perf_counter() - t0

    def singles() -> float:
        t0 = time.perf_counter()
        for seed in range(1, 5):
            engine.generate(ImageRequest(prompt=PROMPT, width=size, height=size, seed=seed,
                                         steps=a.fast_steps, cfg_scale=1.0, fast=True))
        return time.perf_counter() - t0

    batch(), singles()  # load, convert, compile both shapes
    runs: dict[str, list[float]] = {"batch": [], "singles": []}
    for _ in range(a.repeat):
        runs["batch"].append(batch())
        runs["singles"].append(singles())
    b, s = statistics.median(runs["batch"]), statistics.median(runs["singles"])
    print(f"{model} {size}² fast {a.fast_steps} step(s), 4 previews: batch of 4 {b:.2f} s, "
          f"4 × 1 {s:.2f} s → the batch takes {b / s:.2f}× the singles' time "
          f"(load average {os.getloadavg()[0]:.1f}; runs {runs})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
