"""Find and load ControlNet models: a hub id, a diffusers folder, or an A1111 file.

A unit's ``model`` spec is resolved like an image model (:mod:`..models`):

* "" — the ControlNet for the unit's module and the loaded model's family:
  ``Settings.controlnet_models`` (``"canny"`` or ``"sdxl:canny"``), else a file in
  ``Settings.controlnet_dir`` whose name says the kind and family (A1111 names such as
  ``control_v11p_sd15_canny.pth`` or ``diffusers_xl_canny_full.safetensors``), else the
  hub default in :data:`DEFAULTS`;
* a name inside ``controlnet_dir`` (file stem or diffusers sub-folder);
* a diffusers folder or a single file by path (only inside ``controlnet_dir`` when the spec
  came from a chat request);
* a hub id (downloaded once with progress, or a clear offline message).

Single files load with diffusers' ``from_single_file`` using the small config folder of the
reference repo it names (as image checkpoints do), so nothing else is fetched.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tools.core.errors import EgakiError, EngineError, InvalidRequest, ModelMissing
from tools.core.settings import Settings
from tools.engines.diffusers.hub import CONFIG_ALLOW, DownloadCallback, ensure_snapshot
from tools.engines.diffusers.models import ModelFamily, read_checkpoint_header, sha256_file

log = logging.getLogger(__name__)

ControlKind = Literal["canny", "depth", "openpose", "lineart", "softedge"]
SINGLE_EXTS = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
_NET_ALLOW = ["config.json", "diffusion_pytorch_model.safetensors"]

# The ControlNet a preprocessor's map is made for (A1111 module names and ours).
KIND_OF_MODULE: dict[str, ControlKind] = {
    "canny": "canny", "depth": "depth", "depth_midas": "depth", "depth_anything": "depth",
    "depth_zoe": "depth", "openpose": "openpose", "openpose_full": "openpose",
    "dw_openpose_full": "openpose", "lineart": "lineart", "lineart_realistic": "lineart",
    "lineart_coarse": "lineart", "softedge": "softedge", "softedge_hed": "softedge",
    "softedge_pidinet": "softedge", "hed": "softedge",
}
# Words that name a kind in model file names (A1111 and hub naming).
_NAME_WORDS: dict[ControlKind, tuple[str, ...]] = {
    "canny": ("canny",), "depth": ("depth",), "openpose": ("openpose", "pose"),
    "lineart": ("lineart",), "softedge": ("softedge", "hed", "pidi"),
}
DEFAULTS: dict[tuple[ModelFamily, ControlKind], str] = {
    ("sd15", "canny"): "lllyasviel/control_v11p_sd15_canny",
    ("sd15", "depth"): "lllyasviel/control_v11f1p_sd15_depth",
    ("sd15", "openpose"): "lllyasviel/control_v11p_sd15_openpose",
    ("sd15", "lineart"): "lllyasviel/control_v11p_sd15_lineart",
    ("sd15", "softedge"): "lllyasviel/control_v11p_sd15_softedge",
    ("sdxl", "canny"): "diffusers/controlnet-canny-sdxl-1.0",
    ("sdxl", "depth"): "diffusers/controlnet-depth-sdxl-1.0",
    ("sdxl", "openpose"): "thibaud/controlnet-openpose-sdxl-1.0",
}


@dataclass(frozen=True)
class ControlSource:
    """Where one ControlNet lives; ``name`` is what the infotext shows."""

    kind: Literal["hub", "folder", "single_file"]
    ref: str
    name: str
    path: Path | None = None

    @property
    def key(self) -> tuple[str, ...]:
        if self.path is not None and self.path.exists():
            return (self.kind, str(self.path), str(self.path.stat().st_mtime_ns))
        return (self.kind, self.ref)


def _is_sdxl_name(name: str) -> bool:
    return "xl" in name.lower()


def list_controlnets(folder: Path | None) -> list[tuple[str, Path]]:
    """``(name, path)`` of every ControlNet file or diffusers folder in ``folder``."""
    if folder is None or not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix.lower() in SINGLE_EXTS:
            if path.name.startswith("diffusion_pytorch_model"):
                continue  # the weights of a diffusers folder, listed as the folder
            found.append((path.relative_to(folder).with_suffix("").as_posix(), path))
        elif path.is_dir() and (path / "config.json").is_file():
            found.append((path.relative_to(folder).as_posix(), path))
    return found


def _local(path: Path) -> ControlSource:
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InvalidRequest.of("control_model_not_controlnet", name=path.name)
        return ControlSource("folder", str(path), path.name, path)
    if path.suffix.lower() not in SINGLE_EXTS:
        raise InvalidRequest.of("control_model_not_controlnet", name=path.name)
    return ControlSource("single_file", str(path), path.stem, path)


def _by_kind(folder: Path | None, kind: ControlKind, family: ModelFamily) -> Path | None:
    """An A1111-named file for ``kind`` and ``family`` in the ControlNet folder."""
    for name, path in list_controlnets(folder):
        low = Path(name).name.lower()
        if any(w in low for w in _NAME_WORDS[kind]) and _is_sdxl_name(low) == (family == "sdxl"):
            return path
    return None


def resolve_control(spec: str, module: str, family: ModelFamily, settings: Settings, *,
                    trusted: bool = False) -> ControlSource:
    """The ControlNet a unit asks for (see the module docstring); never downloads."""
    spec = spec.strip()
    kind = KIND_OF_MODULE.get(module)
    if not spec:
        if kind is None:
            raise InvalidRequest.of("control_model_needed", module=module)
        configured = settings.controlnet_models
        spec = configured.get(f"{family}:{kind}", configured.get(kind, ""))
        trusted = bool(spec)
        if not spec:
            found = _by_kind(settings.controlnet_dir, kind, family)
            if found is not None:
                return _local(found)
            if (family, kind) not in DEFAULTS:
                raise ModelMissing.of("control_no_default", kind=kind, family=family)
            repo = DEFAULTS[family, kind]
            return ControlSource("hub", repo, repo.split("/")[1])
    if ".." in Path(spec).parts:
        raise InvalidRequest.of("model_name_dots", spec=spec)
    folder = settings.controlnet_dir
    path = Path(spec).expanduser()
    if path.exists():
        inside = folder is not None and Path(os.path.abspath(path)).is_relative_to(
            os.path.abspath(folder))
        if trusted or inside:
            return _local(path.resolve())
        raise InvalidRequest.of("model_outside_folder", spec=spec, folder=folder)
    wanted = Path(spec).stem if Path(spec).suffix.lower() in SINGLE_EXTS else spec
    for name, found in list_controlnets(folder):
        if wanted.lower() in (name.lower(), Path(name).name.lower()):
            return _local(found)
    if _HUB_ID.match(spec):
        return ControlSource("hub", spec, spec.split("/")[1])
    names = ", ".join(n for n, _ in list_controlnets(folder)[:8]) or "-"
    raise ModelMissing.of("control_model_missing", spec=spec, folder=folder or "-", names=names)


def _net_family(net: Any) -> ModelFamily:
    return "sdxl" if getattr(net.config, "addition_embed_type", None) == "text_time" else "sd15"


def load_control(source: ControlSource, family: ModelFamily, settings: Settings,
                 on_download: DownloadCallback | None, device: str, dtype: Any) -> Any:
    """A ``ControlNetModel`` on ``device``/``dtype``, checked to fit the image model."""
    from diffusers import ControlNetModel

    if source.kind == "hub":
        path = ensure_snapshot(source.ref, settings, on_download, allow_patterns=_NET_ALLOW,
                               ignore_patterns=[])
        source = ControlSource("folder", source.ref, source.name, path)
    assert source.path is not None
    try:
        if source.kind == "folder":
            net = ControlNetModel.from_pretrained(source.path, local_files_only=True)
        else:
            net = _from_single_file(ControlNetModel, source.path, settings, on_download)
    except EgakiError:
        raise
    except Exception as err:  # diffusers raises many types for the same user problem
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise EngineError.of("control_model_load_failed", name=source.name,
                             error=f"{type(err).__name__}: {first}") from err
    if _net_family(net) != family:
        raise InvalidRequest.of("control_model_family", name=source.name,
                                net=_net_family(net), family=family)
    return net.to(device=device, dtype=dtype).eval()


def _from_single_file(cls: Any, path: Path, settings: Settings,
                      on_download: DownloadCallback | None) -> Any:
    """An A1111 ``.safetensors``/``.pth`` ControlNet with its reference repo's config only."""
    from diffusers.loaders.single_file_utils import fetch_diffusers_config

    header = read_checkpoint_header(path)
    repo = str(fetch_diffusers_config(header)["pretrained_model_name_or_path"])
    try:
        config = ensure_snapshot(repo, settings, on_download, allow_patterns=CONFIG_ALLOW,
                                 ignore_patterns=[], what="configs")
    except ModelMissing as err:
        raise ModelMissing.of("single_file_needs_config", model=path.name, repo=repo,
                              reason=err) from err
    if path.suffix.lower() == ".safetensors":
        return cls.from_single_file(str(path), config=str(config), local_files_only=True)
    return cls.from_single_file(dict(header), config=str(config), local_files_only=True)


def control_hash(source: ControlSource, cache_dir: Path | None) -> str:
    """The ``[hash]`` A1111's extension writes after the model: 8 hex digits of sha256."""
    path = source.path
    if path is not None and path.is_dir():
        path = path / "diffusion_pytorch_model.safetensors"
    if path is None or not path.is_file():
        return ""
    try:
        return sha256_file(path, cache_dir)[:8]
    except OSError as err:
        log.warning("could not hash %s: %s", path, err)
        return ""
