"""The default segmenter: CLIPSeg (``CLIPSegForImageSegmentation``) through ``transformers``.

CLIPSeg reads a picture and an English phrase and answers a heat map of where the phrase
is; :func:`vision.grounding.regions.components` cuts it into separate candidates. The
model (about 600 MB, ``CIDAS/clipseg-rd64-refined``) is looked for, in order:

1. ``model`` itself when it is a folder (``config.json`` inside);
2. ``models_dir/<name>`` (``name`` = the hub id's last part, e.g. ``clipseg-rd64-refined``);
3. the Hugging Face cache (``cache_dir``), downloaded there once when not ``offline``.

Offline with nothing on disk, :class:`~tools.core.errors.CapabilityMissing` names the model
and the folder to put it in. ``transformers`` and ``torch`` are imported on the first
search, under the heavy-import lock, never at app start.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tools.core.errors import CapabilityMissing
from tools.core.imports import serialized
from vision.grounding.regions import Candidate, broken_folder_errors, components

log = logging.getLogger(__name__)

DEFAULT_MODEL = "CIDAS/clipseg-rd64-refined"
# The heat map is cut at half its peak, never below THRESHOLD; a peak under MIN_PEAK means
# "not there". Chosen from CLIPSeg's published examples, not measured here (no hub access).
THRESHOLD = 0.25
MIN_PEAK = 0.3


def local_folder(model: str, models_dir: Path | None) -> Path | None:
    """The folder holding ``model`` (a folder itself, or ``models_dir/<name>``), if any."""
    candidates = [Path(model).expanduser()]
    if models_dir is not None:
        candidates.append(Path(models_dir).expanduser() / model.rstrip("/").split("/")[-1])
    return next((p for p in candidates if (p / "config.json").is_file()), None)


class ClipSegSegmenter:
    """:class:`~vision.grounding.regions.Segmenter` on CLIPSeg; loads on the first search."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        models_dir: Path | None = None,
        cache_dir: Path | None = None,
        offline: bool = False,
        threshold: float = THRESHOLD,
    ) -> None:
        self.model_id = model
        self.models_dir = models_dir
        self.cache_dir = cache_dir
        self.offline = offline
        self.threshold = threshold
        self.name = f"CLIPSeg ({model.rstrip('/').split('/')[-1]})"
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any] | None = None

    def missing(self) -> CapabilityMissing:
        """The message that names what to fetch and where."""
        folder = self.models_dir or Path("<EGAKI_SEGMENT_MODELS_DIR>")
        name = self.model_id.rstrip("/").split("/")[-1]
        return CapabilityMissing.of(
            "segment_model_missing", model=self.model_id, folder=str(Path(folder) / name)
        )

    def in_cache(self) -> bool:
        """Whether the hub cache holds a copy (a cheap look, before importing anything)."""
        from huggingface_hub.constants import HF_HUB_CACHE

        repo = "models--" + self.model_id.strip("/").replace("/", "--")
        cache = Path(self.cache_dir) if self.cache_dir is not None else Path(HF_HUB_CACHE)
        return any((cache / repo / "snapshots").glob("*/config.json"))

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._loaded is None:
                self._loaded = serialized(self._load_now)
            return self._loaded

    def _load_now(self) -> tuple[Any, Any]:
        folder = local_folder(self.model_id, self.models_dir)
        if folder is None and self.offline and not self.in_cache():
            raise self.missing()  # say so at once, without importing transformers
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        source = str(folder) if folder is not None else self.model_id
        options: dict[str, Any] = {"local_files_only": self.offline or folder is not None}
        if folder is None and self.cache_dir is not None:
            options["cache_dir"] = str(self.cache_dir)
        try:
            processor = CLIPSegProcessor.from_pretrained(source, **options)
            model = CLIPSegForImageSegmentation.from_pretrained(source, **options)
        except OSError as err:  # not in the cache offline, or the hub unreachable
            log.info("CLIPSeg %s unavailable: %s", source, err)
            raise self.missing() from err
        except broken_folder_errors() as err:  # a partial or foreign folder
            raise CapabilityMissing.of(
                "segment_model_broken", folder=source, error=str(err)[:200]
            ) from err
        log.info("CLIPSeg loaded from %s", source)
        return processor, model.eval()

    def heat(self, image: Image.Image, phrase: str) -> np.ndarray:
        """Where ``phrase`` is, 0–1, at the model's own resolution (352² for the real one)."""
        import torch

        processor, model = self._load()
        inputs = processor(text=[phrase], images=[image.convert("RGB")], padding=True,
                           return_tensors="pt")  # fmt: skip
        with torch.inference_mode():
            logits = model(**inputs).logits
        return np.asarray(torch.sigmoid(logits).reshape(logits.shape[-2:]).float().numpy())

    def find(self, image: Image.Image, phrase: str) -> list[Candidate]:
        """The separate regions ``phrase`` names, biggest first (empty when none)."""
        heat = self.heat(image, phrase)
        peak = float(heat.max())
        if peak < MIN_PEAK:
            return []
        return components(heat, image.size, max(self.threshold, peak / 2))
