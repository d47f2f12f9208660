"""Seconds per image: naive diffusers vs Egaki's paths, side by side, on this machine.

    python -m benchmarks.speed                      # SD1.5 (CPU) or SD1.5 + SDXL (GPU)
    python -m benchmarks.speed --models sd15 --steps 20 --paths naive,egaki,fast
    python -m benchmarks.speed --json results.json

Full-size SD1.5/SDXL architectures with random weights (same compute as real weights)
are built once into ``--workdir`` and loaded from disk. Each path runs in its own
subprocess so peak memory (RSS on CPU, allocated VRAM on GPU) is its own:

* ``naive``  — ``AutoPipelineForText2Image.from_pretrained`` with defaults (fp16 on GPU),
  ``--steps`` steps, CFG 7, the folder's default scheduler, full VAE decode;
* ``egaki``  — Egaki's :class:`~tools.engines.diffusers.engine.DiffusersEngine` as configured by
  default, same steps/CFG, its default sampler (DPM++ 2M Karras) and full VAE; on a CPU
  that is OpenVINO (converted once into ``--workdir``; the first run's load time
  includes it);
* ``torch``  — the same with ``cpu_runtime=torch`` (CPU only: PyTorch eager);
* ``fast``   — Egaki's fast mode: LCM, ``--fast-steps`` steps, no CFG, TAESD decode, with
  a random LoRA shaped like the LCM LoRA (what fast mode adds to undistilled models);
  on a distilled model (``--models sd-turbo``) its own recipe instead: 1 step, Euler
  with trailing timesteps, no CFG, TAESD, no LoRA (see ``benchmarks/turbo.py`` for where
  the one step's time goes);
* ``fast-torch`` — fast mode with ``cpu_runtime=torch`` (CPU only);
* ``int8`` / ``fast-int8`` — ``egaki`` / ``fast`` with the int8 OpenVINO UNet (CPU only,
  opt-in: calibrated once into ``--workdir``, several minutes);
* ``long``   — the ``egaki`` path with a 150-token prompt (two 75-token chunks, read in
  full the A1111 way) against a 75-token one (one chunk), same run: the extra seconds
  per image, as UNet steps, and the prompt encoding alone (ms).
* ``hires`` / ``hires-esrgan`` — the ``egaki`` path with hires fix x2 (latent, or an
  ESRGAN-shaped upscaler model): see :mod:`benchmarks.hires_rows`; their overhead against
  ``egaki`` is printed at the end.
* ``control`` — the ``egaki`` path with and without one ControlNet (Canny-shaped, random
  weights), interleaved: the overhead per image and which runtime ran each side
  (:mod:`benchmarks.control`).

``--models tiny`` builds a tiny SD1.5-shaped model instead: seconds, not minutes, to check
that a path runs (its numbers mean nothing).

Peak memory is measured over the timed runs only (VRAM on CUDA; on Linux the resident
high-water mark reset before them), so a one-time conversion doesn't count. Beside it each
row gives the process's lifetime peak RSS (``getrusage``: load, conversion, everything) and
the RSS after the first image (what a running app keeps resident), with the load average.

Runs unchanged on a user's GPU box (no downloads: everything is generated locally).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.hires_rows import hires_fields, overhead_lines, upscalers_dir

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"sd15": 512, "sdxl": 1024, "tiny": 64, "sd-turbo": 512}
# Models distilled for few steps (random weights, real architecture): their own recipe's
# step count; ``fast`` runs them as Egaki's fast mode does (no LCM LoRA, no CFG, TAESD).
DISTILLED = {"sd-turbo": 1}
PROMPT = "two women playing beach volleyball on a sunny beach, photo"


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def ensure_models(workdir: Path, models: list[str]) -> dict[str, Path]:
    from benchmarks import sd_models

    paths: dict[str, Path] = {}
    for name in [*models, "taesd"]:
        path = workdir / name
        if not (path / ("config.json" if name == "taesd" else "model_index.json")).exists():
            t0 = time.perf_counter()
            getattr(sd_models, f"build_{name.replace('-', '_')}")(path)
            print(f"built random {name} in {time.perf_counter() - t0:.0f} s -> {path}", flush=True)
        paths[name] = path
    for name in models:  # fast mode's LCM LoRA (the random models aren't distilled)
        if name in DISTILLED:
            continue
        path = workdir / f"{name}-lcm-lora"
        if not any(path.glob("*.safetensors")):
            sd_models.build_lcm_lora(workdir / name, path)
        paths[f"{name}-lcm-lora"] = path
    return paths


def _peak(device: str) -> float:
    """Peak memory in GiB: allocated VRAM on CUDA, else the process's max RSS."""
    if device == "cuda":
        import torch

        return float(torch.cuda.max_memory_allocated()) / 2**30
    from tools.engines.memory import lifetime_rss_peak

    return lifetime_rss_peak() / 2**30


def _timed(fn: Any, repeat: int, device: str) -> list[float]:
    import torch

    times = []
    for _ in range(repeat):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def worker(path_name: str, model: str, model_dir: Path, taesd: Path, steps: int,
           repeat: int, warmup: int, fast_steps: int = 4,
           fast_lora: Path | None = None) -> dict[str, Any]:
    """Run one path in this process and return its measurements."""
    import torch

    device = _device()
    size = SIZES[model]
    if path_name == "control":
        from benchmarks.control import control_overhead

        return {"path": path_name, "model": model, "device": device, "size": size,
                "steps": steps, **control_overhead(model_dir, taesd, size, steps, repeat, warmup)}
    t_load = time.perf_counter()
    if path_name == "naive":
        from diffusers import AutoPipelineForText2Image

        dtype = torch.float16 if device == "cuda" else torch.float32
        pipe = AutoPipelineForText2Image.from_pretrained(model_dir, torch_dtype=dtype).to(device)
        pipe.set_progress_bar_config(disable=True)

        def run(n: int = steps) -> None:
            pipe(PROMPT, num_inference_steps=n, guidance_scale=7.0, height=size, width=size,
                 generator=torch.Generator("cpu").manual_seed(1))

        used_steps = steps
    else:
        from tools.core.request import ImageRequest
        from tools.core.settings import Settings
        from tools.engines.diffusers.engine import DiffusersEngine

        # A lasting data dir: OpenVINO's converted models are cached there between runs.
        data = model_dir.parent / "egaki-data"
        runtime = "torch" if path_name.endswith("torch") else "auto"
        settings = Settings(_env_file=None, data_dir=data, image_model=str(model_dir),  # type: ignore[call-arg]
                            offline=True, tiny_vae_model=str(taesd), cpu_runtime=runtime,
                            openvino_int8=path_name.endswith("int8"),
                            fast_lora=str(fast_lora) if fast_lora else "off",
                            upscalers_dir=upscalers_dir(model_dir.parent, model),
                            measure_machine=False)
        engine = DiffusersEngine(settings, preview_every=0)
        fast = path_name.startswith("fast")
        used_steps = DISTILLED.get(model, fast_steps) if fast else steps

        def run(n: int = used_steps) -> None:
            engine.generate(ImageRequest(prompt=PROMPT, width=size, height=size, steps=n,
                                         cfg_scale=1.0 if fast else 7.0, seed=1, fast=fast,
                                         **hires_fields(path_name, n)))

        run(1)  # load (and on first use convert) outside the timed runs

    load_s = time.perf_counter() - t_load
    if path_name == "naive":
        run(1)
    from tools.engines.memory import current_rss, lifetime_rss_peak, release_heap

    release_heap()
    steady = (current_rss() or 0) / 2**30  # resident after the first image: what stays
    split = steady_split()
    if path_name == "long":
        return {"path": path_name, "model": model, "device": device, "size": size,
                "steps": used_steps, "load_s": load_s,
                **long_prompt(engine, model_dir, size, steps, repeat, warmup)}
    for _ in range(warmup):
        run(2 if device == "cpu" and not path_name.startswith("fast") else used_steps)
    from tools.engines.memory import PeakMeter

    with PeakMeter(device) as meter:
        times = _timed(run, repeat, device)
    median = sorted(times)[len(times) // 2]
    peak = meter.result.bytes / 2**30 if meter.result else _peak(device)
    return {"path": path_name, "model": model, "device": device, "size": size,
            "steps": used_steps, "seconds": median, "all_seconds": times,
            "it_per_s": used_steps / median, "peak_gib": peak, "load_s": load_s,
            "peak_kind": meter.result.kind if meter.result else "lifetime",
            "process_peak_gib": lifetime_rss_peak() / 2**30, "steady_gib": steady,
            **split, "load_avg": os.getloadavg()[0]}


def steady_split() -> dict[str, Any]:
    """The steady RSS as anonymous vs file-backed GiB, and the largest mapped files."""
    from tools.engines.memory import file_mappings, rss_split

    kinds = rss_split()
    return {"steady_anon_gib": kinds.get("anon", 0) / 2**30,
            "steady_file_gib": kinds.get("file", 0) / 2**30,
            "steady_files": [(Path(n).name, b / 2**30) for n, b in file_mappings(4)]}


def prompt_of(tokenizer: Any, n: int) -> str:
    """A prompt of exactly ``n`` tokens without commas (so 75 = one chunk, 150 = two)."""
    text = " ".join(f"{w}{i}" for i in range(400) for w in ("red", "fox", "snow", "pine"))
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:n]
    return str(tokenizer.decode(ids))


def long_prompt(engine: Any, model_dir: Path, size: int, steps: int, repeat: int,
                warmup: int) -> dict[str, Any]:
    """The ``long`` path: seconds per image at 75 and 150 tokens, interleaved, and the
    prompt encoding alone at each length."""
    import statistics

    from transformers import CLIPTokenizer

    from tools.core.request import ImageRequest
    from tools.engines.diffusers.prompts.a1111 import count_tokens
    from tools.engines.diffusers.prompts.encoding import encode

    tokenizer = CLIPTokenizer.from_pretrained(str(model_dir / "tokenizer"))
    prompts = {n: prompt_of(tokenizer, n) for n in (75, 150)}
    assert [len(count_tokens(p, tokenizer).per_chunk) for p in prompts.values()] == [1, 2]

    def image(n: int) -> float:
        t0 = time.perf_counter()
        engine.generate(ImageRequest(prompt=prompts[n], width=size, height=size, steps=steps,
                                     cfg_scale=7.0, seed=1))
        return time.perf_counter() - t0

    for _ in range(warmup):
        for n in (75, 150):
            image(n)
    seconds: dict[int, list[float]] = {75: [], 150: []}
    for _ in range(repeat):  # interleaved: drift in the machine's speed hits both alike
        for n in (75, 150):
            seconds[n].append(image(n))
    pipe = engine.cache.current.pipe
    encode_ms = {}
    for n in (75, 150):
        runs = []
        for _ in range(7):
            t0 = time.perf_counter()
            encode(pipe, prompts[n], "")
            runs.append((time.perf_counter() - t0) * 1000)
        encode_ms[n] = statistics.median(runs)
    short, long = statistics.median(seconds[75]), statistics.median(seconds[150])
    return {"seconds": short, "seconds_150": long, "all_seconds": seconds[75],
            "all_seconds_150": seconds[150], "it_per_s": steps / short,
            "step_s": short / steps, "encode_ms_75": encode_ms[75],
            "encode_ms_150": encode_ms[150], "peak_gib": _peak(_device()),
            "peak_kind": "lifetime"}


def _long_row(r: dict[str, Any]) -> str:
    extra = r["seconds_150"] - r["seconds"]
    return (f"{r['model']:5} long   {r['size']}² {r['steps']:3d} steps  75 tokens "
            f"{r['seconds']:.2f} s/img, 150 tokens {r['seconds_150']:.2f} s/img: "
            f"{extra:+.2f} s ({100 * extra / r['seconds']:+.1f} %, "
            f"{extra / r['step_s']:+.2f} UNet steps); encoding alone "
            f"{r['encode_ms_75']:.0f} → {r['encode_ms_150']:.0f} ms")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", help="sd15,sdxl,sd-turbo or tiny (default: sd15 on CPU, "
                   "sd15,sdxl on GPU)")
    p.add_argument("--paths", help="default: naive,torch,egaki,fast-torch,fast,long,control on "
                   "CPU, naive,egaki,fast,long,control elsewhere")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--fast-steps", type=int, default=4, help="steps in fast mode (1-8)")
    p.add_argument("--repeat", type=int, default=None, help="timed runs (default 1 CPU, 5 GPU)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=Path.home() / ".cache" / "egaki-bench")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--worker", nargs=2, metavar=("PATH", "MODEL"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    device = _device()
    models = (a.models or ("sd15,sdxl" if device == "cuda" else "sd15")).split(",")
    repeat = a.repeat or (5 if device == "cuda" else 1)
    paths = a.paths or ("naive,torch,egaki,fast-torch,fast,long,control" if device == "cpu"
                        else "naive,egaki,fast,long,control")
    if not a.paths and all(m in DISTILLED for m in models):
        paths = "fast-torch,fast" if device == "cpu" else "naive,fast"  # their own recipe
    a.workdir.mkdir(parents=True, exist_ok=True)
    dirs = ensure_models(a.workdir, models)

    if a.worker:
        path_name, model = a.worker
        out = worker(path_name, model, dirs[model], dirs["taesd"], a.steps, repeat, a.warmup,
                     a.fast_steps, dirs.get(f"{model}-lcm-lora"))
        print("RESULT " + json.dumps(out), flush=True)
        return 0

    import torch

    cpu = platform.processor() or platform.machine()
    print(f"# device: {device} · torch {torch.__version__} · {cpu} · {os.cpu_count()} CPUs"
          f" · steps {a.steps} · repeat {repeat}", flush=True)
    results: list[dict[str, Any]] = []
    for model in models:
        for path_name in paths.split(","):
            cmd = [sys.executable, "-m", "benchmarks.speed", "--worker", path_name, model,
                   "--models", model, "--steps", str(a.steps), "--repeat", str(repeat),
                   "--fast-steps", str(a.fast_steps),
                   "--warmup", str(a.warmup), "--workdir", str(a.workdir)]
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                print(f"{model}/{path_name} FAILED:\n{proc.stderr[-2000:]}", flush=True)
                continue
            r = json.loads(line.removeprefix("RESULT "))
            results.append(r)
            if path_name == "long":
                print(_long_row(r), flush=True)
                continue
            if path_name == "control":
                from benchmarks.control import control_row

                print(control_row(r), flush=True)
                continue
            print(f"{model:5} {path_name:6} {r['size']}² {r['steps']:3d} steps  "
                  f"{r['seconds']:8.2f} s/img  {r['it_per_s']:6.2f} it/s  "
                  f"peak {r['peak_gib']:5.1f} GiB  process peak {r['process_peak_gib']:5.1f} GiB  "
                  f"after 1st image {r['steady_gib']:5.1f} GiB "
                  f"(anon {r.get('steady_anon_gib', 0):.2f}, "
                  f"file {r.get('steady_file_gib', 0):.2f})"
                  f"  (load {r['load_s']:.0f} s, load avg {r['load_avg']:.1f})", flush=True)
    for model in models:
        base = next((r for r in results if r["model"] == model and r["path"] == "naive"), None)
        for r in results:
            if base and r["model"] == model and r is not base and r["path"] not in (
                    "long", "control"):
                print(f"{model}: {r['path']} is {base['seconds'] / r['seconds']:.1f}x naive")
    print("\n".join(overhead_lines(results)), flush=True)
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
