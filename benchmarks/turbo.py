"""Where one SD-Turbo picture's time goes on this machine: the one-step breakdown.

    python -m benchmarks.turbo --workdir ~/.cache/egaki-bench-turbo --repeat 5
    python -m benchmarks.turbo --profile          # + a pyinstrument profile of one image

Builds SD-Turbo's architecture with random weights (:func:`benchmarks.sd_models.build_sd_turbo`,
same compute as the real download) and runs it as Egaki's fast mode does: the family's own
recipe (1 step, Euler with trailing timesteps, no CFG, TAESD decode) through
:meth:`~tools.engines.diffusers.engine.DiffusersEngine.generate`, on the default CPU
runtime (OpenVINO where installed). For each timed image it splits the wall time into the
text encoder, the UNet call, the TAESD decode and its post-processing, and everything
else in the engine (planning, scheduler, callbacks, locks, hashing), and then times the
PNG save with infotext that the studio's runner adds. Medians, with the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.speed import PROMPT, ensure_models

PARTS = ("text encoder", "UNet", "decode", "post-process")


class Clock:
    """Seconds spent in named parts during one image (hooks add to ``spent``), and the
    process's CPU seconds in them (``cpu``: all threads)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def module(self, module: Any, part: str) -> None:
        """Time every call of an ``nn.Module`` (forward hooks: OpenVINO routes included)."""
        started: list[tuple[float, float]] = []

        def pre(*_: Any) -> None:
            started.append((time.perf_counter(), time.process_time()))

        def post(*_: Any) -> None:
            wall, cpu = started.pop()
            self.spent[part] += time.perf_counter() - wall
            self.cpu[part] += time.process_time() - cpu
            self.calls[part] += 1

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)

    def method(self, owner: Any, name: str, part: str) -> None:
        """Time every call of ``owner.name`` (an attribute, e.g. an installed route)."""
        inner: Callable[..., Any] = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return inner(*args, **kwargs)
            finally:
                self.spent[part] += time.perf_counter() - t0
                self.cpu[part] += time.process_time() - c0
                self.calls[part] += 1

        setattr(owner, name, timed)


def engine_for(model_dir: Path, taesd: Path, runtime: str = "auto", int8: bool = False) -> Any:
    """Egaki's engine on the default CPU runtime, as the speed benchmark builds it."""
    from tools.core.settings import Settings
    from tools.engines.diffusers.engine import DiffusersEngine

    settings = Settings(_env_file=None, data_dir=model_dir.parent / "egaki-data",  # type: ignore[call-arg]
                        image_model=str(model_dir), offline=True, tiny_vae_model=str(taesd),
                        fast_lora="off", measure_machine=False, cpu_runtime=runtime,
                        openvino_int8=int8)
    return DiffusersEngine(settings, preview_every=0)


def request(size: int = 512) -> Any:
    from tools.core.request import ImageRequest

    # what fast mode sends; the plan gives SD-Turbo its own recipe (1 step, CFG 1, trailing)
    return ImageRequest(prompt=PROMPT, width=size, height=size, steps=1, cfg_scale=1.0,
                        seed=1, fast=True)


def breakdown(engine: Any, repeat: int, out_dir: Path) -> dict[str, Any]:
    """Per-part medians over ``repeat`` images (the engine already warm)."""
    from tools.infotext.png import save_png

    pipe = engine.cache.current.pipe
    clock = Clock()
    clock.module(pipe.text_encoder, "text encoder")
    clock.module(pipe.unet, "UNet")
    tiny = engine.cache.current.tiny_vae(engine.settings)[0]
    clock.method(tiny, "decode", "decode")
    clock.method(pipe.image_processor, "postprocess", "post-process")
    rows: list[dict[str, float]] = []
    for i in range(repeat):
        clock.spent.clear()
        clock.cpu.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        images = engine.generate(request())
        total, cpu = time.perf_counter() - t0, time.process_time() - c0
        t1 = time.perf_counter()
        save_png(images[0], out_dir / f"{i}.png")
        row = {part: clock.spent[part] for part in PARTS}
        row["engine, rest"] = total - sum(row.values())
        row["generate"] = total
        row["cpu"] = cpu
        row.update({f"cpu {part}": clock.cpu[part] for part in PARTS})
        row["PNG + infotext"] = time.perf_counter() - t1
        rows.append(row)
    return {"median": {k: statistics.median(r[k] for r in rows) for k in rows[0]},
            "all": rows, "steps": images[0].request.steps,
            "cfg": images[0].request.cfg_scale, "sampler": images[0].request.sampler,
            "unet_calls": clock.calls["UNet"] // repeat,
            "openvino": engine.cache.current.openvino is not None}


def profile(engine: Any) -> str:
    """A pyinstrument text profile of one image (pip install pyinstrument, not locked)."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return "(pyinstrument not installed: pip install pyinstrument, or PYTHONPATH=it)"
    profiler = Profiler(interval=0.001)
    profiler.start()
    engine.generate(request())
    profiler.stop()
    return str(profiler.output_text(unicode=False, color=False, show_all=False))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workdir", type=Path, default=Path.home() / ".cache" / "egaki-bench")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--runtime", default="auto", choices=("auto", "torch", "openvino"),
                   help="the CPU runtime (default: Egaki's, OpenVINO where installed)")
    p.add_argument("--int8", action="store_true",
                   help="the int8 OpenVINO UNet (EGAKI_OPENVINO_INT8; calibrated once, minutes)")
    a = p.parse_args(argv)
    a.workdir.mkdir(parents=True, exist_ok=True)
    dirs = ensure_models(a.workdir, ["sd-turbo"])
    engine = engine_for(dirs["sd-turbo"], dirs["taesd"], a.runtime, a.int8)
    t0 = time.perf_counter()
    engine.generate(request())  # load, convert once, compile
    print(f"first image (load, convert, compile) {time.perf_counter() - t0:.1f} s", flush=True)
    for _ in range(a.warmup):
        engine.generate(request())
    with tempfile.TemporaryDirectory() as tmp:
        load = os.getloadavg()[0]
        result = breakdown(engine, a.repeat, Path(tmp))
    med = result["median"]
    print(f"sd-turbo 512² {result['steps']} step(s), CFG {result['cfg']}, {result['sampler']}, "
          f"TAESD, {'OpenVINO' if result['openvino'] else 'torch'}{' int8' if a.int8 else ''}: "
          f"{med['generate']:.2f} s/image (median of {a.repeat}; load avg {load:.1f} → "
          f"{os.getloadavg()[0]:.1f}); UNet calls per image: {result['unet_calls']}")
    for part in (*PARTS, "engine, rest", "PNG + infotext"):
        cpu = f"  ({1000 * med[f'cpu {part}']:6.0f} ms CPU)" if part in PARTS else ""
        print(f"  {part:15} {1000 * med[part]:7.0f} ms{cpu}")
    # On a busy machine the wall time stretches; CPU seconds over the cores used hint at
    # what a quiet machine would take (an estimate, not a measurement).
    print(f"  CPU time per image {med['cpu']:.2f} s on {os.cpu_count()} cores")
    print("  all runs (s): " + ", ".join(f"{r['generate']:.2f}" for r in result["all"]))
    if a.profile:
        print(profile(engine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
