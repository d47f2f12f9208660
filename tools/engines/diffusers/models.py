"""Find image models on disk or on the hub, tell SD1.x from SDXL, and hash them A1111-style.

A model spec (``Settings.image_model`` or ``ImageRequest.model``) is one of:

* a Hugging Face repo id (``stable-diffusion-v1-5/stable-diffusion-v1-5``);
* a local diffusers folder (has ``model_index.json``);
* a single-file checkpoint (``.safetensors``/``.ckpt``), by path or by name inside
  ``models_dir`` (the A1111 ``models/Stable-diffusion`` layout, subfolders allowed).

Resolution never downloads anything; :mod:`tools.engines.diffusers.hub` does that. Paths outside
``models_dir`` are accepted only from trusted settings, not from chat requests.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tools.core.errors import EngineError, InvalidRequest, ModelMissing
from tools.core.messages import Message
from tools.core.settings import Settings

log = logging.getLogger(__name__)

ModelFamily = Literal["sd15", "sdxl"]
SourceKind = Literal["hub", "folder", "single_file"]
CHECKPOINT_EXTS = (".safetensors", ".ckpt")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_HASH_CACHE = "model_hashes.json"
_hash_lock = threading.Lock()


LORA_EXTS = (".safetensors", ".pt", ".ckpt")


@dataclass(frozen=True)
class ModelFile:
    """One file found in a models or LoRA folder: ``name`` is what users type."""

    name: str
    path: Path
    size: int


@dataclass(frozen=True)
class ModelSource:
    """Where a model lives. ``ref`` is the repo id or the absolute path as text."""

    kind: SourceKind
    ref: str
    name: str
    path: Path | None = None  # local folder or file; for hub, the cached snapshot if any

    @property
    def is_local(self) -> bool:
        return self.kind != "hub"


# --- listing ---------------------------------------------------------------------------


def _list_files(folder: Path | None, exts: tuple[str, ...]) -> list[ModelFile]:
    if folder is None or not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() in exts and path.is_file():
            rel = path.relative_to(folder).with_suffix("").as_posix()
            found.append(ModelFile(rel, path, path.stat().st_size))
    return found


def list_checkpoints(models_dir: Path | None) -> list[ModelFile]:
    """Checkpoints under ``models_dir`` (recursive), named by relative path without extension.

    Diffusers folders directly inside ``models_dir`` are listed too (size 0).
    """
    files = _list_files(models_dir, CHECKPOINT_EXTS)
    if models_dir is not None and models_dir.is_dir():
        for sub in sorted(models_dir.iterdir()):
            if (sub / "model_index.json").is_file():
                files.append(ModelFile(sub.name, sub, 0))
    return files


def list_loras(lora_dir: Path | None) -> list[ModelFile]:
    """LoRA files under ``lora_dir`` (recursive); ``name`` is the file stem A1111 tags use."""
    return [
        ModelFile(f.path.stem, f.path, f.size) for f in _list_files(lora_dir, LORA_EXTS)
    ]


def suggest(name: str, choices: list[str], n: int = 3) -> Message | str:
    """A "did you mean" hint for a not-found message's ``{hint}`` ("" if nothing is close)."""
    hits = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    hits += [c for c in choices if name.lower() in c.lower() and c not in hits]
    if not hits:
        return ""
    return Message.of("did_you_mean", listed=", ".join(hits[:n]))


# --- resolution ------------------------------------------------------------------------


def _local_source(path: Path) -> ModelSource:
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise InvalidRequest.of("model_folder_not_diffusers", path=path)
        return ModelSource("folder", str(path), path.name, path)
    if path.suffix.lower() not in CHECKPOINT_EXTS:
        raise InvalidRequest.of("model_not_checkpoint", name=path.name)
    return ModelSource("single_file", str(path), path.stem, path)


def _find_in_models_dir(spec: str, models_dir: Path) -> Path | None:
    wanted = spec.replace("\\", "/").strip("/")
    stem = Path(wanted).stem if Path(wanted).suffix.lower() in CHECKPOINT_EXTS else wanted
    entries = list_checkpoints(models_dir)
    for e in entries:  # exact relative name, case-insensitive
        if e.name.lower() == stem.lower():
            return e.path
    if "/" in stem:
        return None  # a relative name must match exactly (it may be a hub id instead)
    by_stem = [e for e in entries if Path(e.name).name.lower() == stem.lower()]
    if len(by_stem) > 1:
        names = ", ".join(e.name for e in by_stem)
        raise InvalidRequest.of("model_ambiguous", spec=spec, names=names)
    return by_stem[0].path if by_stem else None


def _inside(path: Path, folder: Path | None) -> bool:
    """Lexical containment (symlinked checkpoints inside the models folder are fine)."""
    if folder is None:
        return False
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder))


def resolve_model(spec: str, settings: Settings, *, trusted: bool = True) -> ModelSource:
    """Turn a model spec into a :class:`ModelSource` without downloading anything.

    ``trusted`` is for specs from settings; request specs (``trusted=False``) may only name
    models inside ``models_dir``, hub ids, or the configured ``image_model`` itself.
    """
    spec = spec.strip()
    if not spec:
        raise InvalidRequest.of("model_not_set")
    if ".." in Path(spec).parts:
        raise InvalidRequest.of("model_name_dots", spec=spec)
    path = Path(spec).expanduser()
    if path.exists():
        if trusted or spec == settings.image_model or _inside(path, settings.models_dir):
            return _local_source(path.resolve())
        raise InvalidRequest.of("model_outside_folder", spec=spec, folder=settings.models_dir)
    if settings.models_dir is not None and not path.is_absolute():
        found = _find_in_models_dir(spec, settings.models_dir)
        if found is not None:
            return _local_source(found)
    if _HUB_ID.match(spec) and not spec.lower().endswith(CHECKPOINT_EXTS):
        return ModelSource("hub", spec, spec)
    names = [e.name for e in list_checkpoints(settings.models_dir)]
    where = f" in {settings.models_dir}" if settings.models_dir and not path.is_absolute() else ""
    raise ModelMissing.of(
        "image_model_missing", model=spec, spec=spec, where=where, hint=suggest(spec, names)
    )


# --- family detection --------------------------------------------------------------------


class _Shape:
    """Stands in for a tensor where only ``.shape`` is read (diffusers' model-type sniffing)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape


def read_checkpoint_header(path: Path) -> dict[str, Any]:
    """Key → object with ``.shape`` for a single-file checkpoint, reading as little as possible.

    ``.safetensors`` is read from its header only; ``.ckpt`` is memory-mapped (weights only,
    no pickle code runs). A damaged file raises :class:`EngineError`.
    """
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                return {k: _Shape(tuple(f.get_slice(k).get_shape())) for k in f.keys()}  # noqa: SIM118
        import torch

        try:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # old non-zip pickles cannot be memory-mapped
            sd = torch.load(path, map_location="cpu", weights_only=True)
        while isinstance(sd, dict) and "state_dict" in sd:
            sd = sd["state_dict"]
        return dict(sd)
    except Exception as err:  # any parser error means the same thing to a user
        raise EngineError.of(
            "checkpoint_unreadable", name=path.name, error=type(err).__name__
        ) from err


def family_from_keys(keys: Any, name: str = "") -> ModelFamily:
    """SDXL checkpoints carry ``conditioner.embedders.*``; SD1.x/2.x ``model.diffusion_model.*``."""
    if any(k.startswith("conditioner.embedders.") for k in keys):
        return "sdxl"
    if any(k.startswith("model.diffusion_model.") for k in keys):
        return "sd15"
    raise InvalidRequest.of("not_sd_checkpoint", name=name or Message.of("this_file"))


def family_from_index(folder: Path) -> ModelFamily:
    """Read ``_class_name`` from a diffusers folder's ``model_index.json``."""
    try:
        cls = str(json.loads((folder / "model_index.json").read_text())["_class_name"])
    except (OSError, ValueError, KeyError) as err:
        raise EngineError.of("model_index_broken", folder=folder.name) from err
    if cls.startswith("StableDiffusionXL"):
        return "sdxl"
    if cls.startswith("StableDiffusion"):
        return "sd15"
    raise InvalidRequest.of("model_unsupported_class", folder=folder.name, cls=cls)


def detect_family(source: ModelSource) -> ModelFamily:
    """SD1.x vs SDXL for a local source; a hub source needs its snapshot path first."""
    if source.path is None:
        return "sdxl" if "xl" in source.ref.lower() else "sd15"  # best guess before download
    if source.kind == "single_file":
        return family_from_keys(read_checkpoint_header(source.path), source.path.name)
    return family_from_index(source.path)


# --- hashing ---------------------------------------------------------------------------


def weights_file(source: ModelSource) -> Path | None:
    """The file A1111-style hashes describe: the checkpoint, or a folder's UNet weights."""
    if source.path is None:
        return None
    if source.path.is_file():
        return source.path
    unet = source.path / "unet"
    for name in (
        "diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.fp16.safetensors",
        "diffusion_pytorch_model.bin",
    ):
        if (unet / name).is_file():
            return unet / name
    return None


def sha256_file(path: Path, cache_dir: Path | None, *, skip_header: bool = False) -> str:
    """Full sha256 of ``path``, cached in ``cache_dir`` by (path, size, mtime).

    ``skip_header`` hashes a ``.safetensors`` file without its JSON header (the kohya /
    "addnet" hash A1111 uses for LoRAs, stable when only metadata changes).
    """
    st = path.stat()
    key = ("addnet:" if skip_header else "") + str(path.resolve())
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    cache_file = cache_dir / _HASH_CACHE if cache_dir else None
    with _hash_lock:
        cache: dict[str, Any] = {}
        if cache_file and cache_file.is_file():
            try:
                cache = json.loads(cache_file.read_text())
            except (OSError, ValueError):
                cache = {}  # a corrupt cache only costs a re-hash
        hit = cache.get(key)
        if isinstance(hit, dict) and all(hit.get(k) == v for k, v in stamp.items()):
            return str(hit["sha256"])
    digest = hashlib.sha256()
    with path.open("rb") as f:
        if skip_header:
            f.seek(8 + int.from_bytes(f.read(8), "little"))
        while chunk := f.read(8 * 1024 * 1024):
            digest.update(chunk)
    value = digest.hexdigest()
    if cache_file:
        with _hash_lock:
            try:
                cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
            except (OSError, ValueError):
                cache = {}
            cache[key] = {**stamp, "sha256": value}
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache, indent=1))
            tmp.replace(cache_file)
    return value


def model_hash(source: ModelSource, cache_dir: Path | None) -> str:
    """A1111 "Model hash": the first 10 hex digits of the weights file's sha256 ("" if none)."""
    path = weights_file(source)
    if path is None:
        return ""
    try:
        return sha256_file(path, cache_dir)[:10]
    except OSError as err:
        log.warning("could not hash %s: %s", path, err)
        return ""


def lora_hash(path: Path, cache_dir: Path | None) -> str:
    """A1111 "Lora hashes" value: 12 hex digits of the (header-less for safetensors) sha256."""
    try:
        addnet = path.suffix.lower() == ".safetensors"
        return sha256_file(path, cache_dir, skip_header=addnet)[:12]
    except OSError as err:
        log.warning("could not hash %s: %s", path, err)
        return ""
