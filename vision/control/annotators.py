"""Where the preprocessor (annotator) models come from, and what to say when they can't.

Each kind needs weights, looked for in this order:

1. ``Settings.annotators_dir`` — a transformers folder named after the repo (e.g.
   ``Depth-Anything-V2-Small-hf/``), or single files anywhere below it (the
   ``lllyasviel/Annotators`` files, as A1111's ``extensions/sd-webui-controlnet/annotator/
   downloads/<kind>/`` holds them);
2. the Hugging Face cache;
3. a download, once, with progress — unless ``Settings.offline``: then
   :class:`~tools.core.errors.ModelMissing` names exactly what to fetch and where to put it.

Depth (Depth Anything V2) and pose (RT-DETR person boxes + ViTPose keypoints) run through
``transformers``, already part of Egaki. Line art and soft edges use ``controlnet-aux``'s
networks when that optional package imports (it pulls OpenCV, scikit-image, timm and
torchvision, ~235 MB, and its torchvision must match the installed torch); else a clear
message says so.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tools.core.errors import EngineError, ModelMissing
from tools.core.events import Downloading, EngineEventSink
from tools.core.settings import Settings

log = logging.getLogger(__name__)

MapKind = Literal["canny", "depth", "openpose", "lineart", "softedge"]
AUX_REPO = "lllyasviel/Annotators"


@dataclass(frozen=True)
class Annotator:
    """What a kind needs: whole transformers repos, or single files of ``AUX_REPO``."""

    kind: MapKind
    repos: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    folder: str = ""  # A1111's annotator/downloads/<folder>

    def needs(self) -> str:
        """The repos/files to fetch, for messages."""
        if self.repos:
            return ", ".join(self.repos)
        return ", ".join(f"{AUX_REPO}/{f}" for f in self.files)


ANNOTATORS: dict[MapKind, Annotator] = {
    "depth": Annotator("depth", repos=("depth-anything/Depth-Anything-V2-Small-hf",)),
    "openpose": Annotator("openpose", repos=("PekingU/rtdetr_r50vd_coco_o365",
                                             "usyd-community/vitpose-base-simple")),
    "lineart": Annotator("lineart", files=("sk_model.pth", "sk_model2.pth"), folder="lineart"),
    "softedge": Annotator("softedge", files=("ControlNetHED.pth",), folder="hed"),
}


def _progress(on_event: EngineEventSink | None) -> Any:
    if on_event is None:
        return None
    from huggingface_hub.utils import tqdm as hf_tqdm

    sink = on_event

    class _Reporting(hf_tqdm):
        def update(self, n: float | None = 1) -> bool | None:
            done = int(getattr(self, "n", 0) + (n or 0))
            try:
                sink(Downloading(str(getattr(self, "desc", "") or "annotator"), done,
                                     int(self.total) if self.total else None))
            except Exception:  # a broken progress display must not break the download
                log.exception("download progress callback failed")
            return super().update(n)

    return _Reporting


def _find_file(root: Path | None, name: str) -> Path | None:
    if root is None or not root.is_dir():
        return None
    return next((p for p in sorted(root.rglob(name)) if p.is_file()), None)


def _local_repo(repo: str, settings: Settings) -> Path | None:
    """The repo as a folder under the annotators dir, or in the hub cache; never online."""
    root = settings.annotators_dir
    if root is not None:
        for name in (repo.split("/")[1], repo.replace("/", "--"), repo.replace("/", "_")):
            if (root / name / "config.json").is_file():
                return root / name
    from huggingface_hub import snapshot_download

    try:
        found = Path(snapshot_download(repo, cache_dir=settings.hf_cache_dir,
                                       local_files_only=True))
    except Exception:  # not cached (or incomplete)
        return None
    return found if (found / "config.json").is_file() else None


def _local_file(name: str, settings: Settings) -> Path | None:
    if (found := _find_file(settings.annotators_dir, name)) is not None:
        return found
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(AUX_REPO, name, cache_dir=settings.hf_cache_dir,
                                    local_files_only=True))
    except Exception:
        return None


def on_disk(kind: MapKind, settings: Settings) -> bool:
    """True when ``kind`` needs nothing downloaded (Canny never does)."""
    if kind == "canny":
        return True
    spec = ANNOTATORS[kind]
    return all(_local_repo(r, settings) for r in spec.repos) and all(
        _local_file(f, settings) for f in spec.files)


def unusable(kind: MapKind, settings: Settings) -> ModelMissing | None:
    """Why ``kind`` cannot run here (offline and not on disk, a missing package), or None."""
    if kind in ("lineart", "softedge") and importlib.util.find_spec("controlnet_aux") is None:
        return ModelMissing.of("control_aux_missing", kind=kind)
    if settings.offline and not on_disk(kind, settings):
        return offline_missing(kind, settings)
    return None


def offline_missing(kind: MapKind, settings: Settings) -> ModelMissing:
    spec = ANNOTATORS[kind]
    where = settings.annotators_dir or "EGAKI_ANNOTATORS_DIR"
    if spec.repos:
        command = " && ".join(f"hf download {r} --local-dir {where}/{r.split('/')[1]}"
                              for r in spec.repos)
    else:
        files = " ".join(spec.files)
        command = f"hf download {AUX_REPO} {files} --local-dir {where}/{spec.folder}"
    return ModelMissing.of("control_annotator_offline", kind=kind, needs=spec.needs(),
                           command=command, folder=where)


def fetch(kind: MapKind, settings: Settings, on_event: EngineEventSink | None = None
          ) -> list[Path]:
    """Local paths of ``kind``'s weights (repo folders, or files), downloading once."""
    spec = ANNOTATORS[kind]
    found: list[Path | None] = [_local_repo(r, settings) for r in spec.repos]
    found += [_local_file(f, settings) for f in spec.files]
    if all(found):
        return [p for p in found if p is not None]
    if settings.offline:
        raise offline_missing(kind, settings)
    from huggingface_hub import hf_hub_download, snapshot_download

    try:
        paths = [Path(snapshot_download(r, cache_dir=settings.hf_cache_dir,
                                        tqdm_class=_progress(on_event))) for r in spec.repos]
        paths += [Path(hf_hub_download(AUX_REPO, f, cache_dir=settings.hf_cache_dir))
                  for f in spec.files]
    except Exception as err:  # network down, disk full, repo moved
        raise EngineError.of("control_annotator_download_failed", kind=kind,
                             needs=spec.needs(), error=f"{type(err).__name__}: {err}"[:300]
                             ) from err
    return paths
