"""Where upscaler models live and which one is best.

The folder is ``EGAKI_UPSCALERS_DIR``; it may be an A1111 install's ``models`` folder
(``models/ESRGAN``, ``models/RealESRGAN`` inside it are searched too) or the ``ESRGAN``
folder itself. Files are ``.pth``, ``.pt`` or ``.safetensors``, named by their stem as
A1111 names them (``4x-UltraSharp``, ``RealESRGAN_x4plus``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SUFFIXES = (".pth", ".pt", ".safetensors")
SUBFOLDERS = ("", "ESRGAN", "RealESRGAN", "DAT", "SwinIR", "upscale_models")
# Known good general-purpose upscalers, best first (matched case-insensitively in the stem).
PREFERRED = ("4x-ultrasharp", "realesrgan_x4plus", "4x_nmkd-siax", "4x-remacri",
             "realesrgan_x2plus", "esrgan_4x", "span", "4x")

# A1111's built-in upscaler names (as its infotexts write them) → the file stems it loads.
A1111_NAMES = {"r-esrgan 4x+": "realesrgan_x4plus",
               "r-esrgan 4x+ anime6b": "realesrgan_x4plus_anime_6b",
               "r-esrgan 2x+": "realesrgan_x2plus", "swinir 4x": "swinir_4x"}


@dataclass(frozen=True)
class UpscalerFile:
    """One model file; ``name`` is its stem, the name requests and infotexts use."""

    name: str
    path: Path


def list_upscalers(folder: Path | None) -> list[UpscalerFile]:
    """Every upscaler file in ``folder`` (and its A1111 sub-folders), sorted by name."""
    if folder is None or not folder.is_dir():
        return []
    found: dict[str, UpscalerFile] = {}
    for sub in SUBFOLDERS:
        where = folder / sub if sub else folder
        if not where.is_dir():
            continue
        for path in sorted(where.iterdir()):
            if path.is_file() and path.suffix.lower() in SUFFIXES:
                found.setdefault(path.stem, UpscalerFile(path.stem, path))
    return sorted(found.values(), key=lambda f: f.name.casefold())


def find_upscaler(folder: Path | None, name: str) -> UpscalerFile | None:
    """The file named ``name`` (stem, case-insensitive; A1111's built-in names such as
    ``R-ESRGAN 4x+`` find the file they load), or None."""
    want = name.casefold()
    want = A1111_NAMES.get(want, want)
    return next((f for f in list_upscalers(folder) if f.name.casefold() == want), None)


def best_upscaler(folder: Path | None) -> UpscalerFile | None:
    """The best general-purpose upscaler present: a known good one by name, else the first."""
    files = list_upscalers(folder)
    if not files:
        return None

    def rank(f: UpscalerFile) -> int:
        stem = f.name.casefold()
        return next((i for i, p in enumerate(PREFERRED) if p in stem), len(PREFERRED))

    return min(files, key=rank)
