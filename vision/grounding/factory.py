"""The segmenter the settings name: ``auto`` (an OWL detector + SAM when their folders are
in ``EGAKI_SEGMENT_MODELS_DIR``, else CLIPSeg), ``clipseg``, ``owl-sam`` or ``fake``."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tools.core.errors import CapabilityMissing
from tools.core.settings import Settings
from vision.grounding.clipseg import ClipSegSegmenter
from vision.grounding.fixed import FixedSegmenter
from vision.grounding.owl_sam import DETECTORS, OwlSamSegmenter, find_folders
from vision.grounding.regions import Candidate, Segmenter


class MissingSegmenter:
    """Stands in for a segmenter whose model is not on disk: every search says so."""

    def __init__(self, error: CapabilityMissing) -> None:
        self.name, self.error = "—", error

    def find(self, image: Image.Image, phrase: str) -> list[Candidate]:
        raise self.error


def make_segmenter(settings: Settings) -> Segmenter:
    """A segmenter for ``settings``; cheap (a model loads on its first search)."""
    if settings.segmenter == "fake":
        return FixedSegmenter()
    folders = find_folders(settings.segment_models_dir)
    if folders is not None and settings.segmenter in ("auto", "owl-sam"):
        return OwlSamSegmenter(*folders)
    if settings.segmenter == "owl-sam":  # asked for, not there: say what to fetch
        folder = Path(settings.segment_models_dir or "<EGAKI_SEGMENT_MODELS_DIR>") / DETECTORS[0]
        return MissingSegmenter(CapabilityMissing.of(
            "segment_model_missing", model=f"google/{DETECTORS[0]}", folder=str(folder)))
    return ClipSegSegmenter(
        settings.segment_model,
        models_dir=settings.segment_models_dir,
        cache_dir=settings.hf_cache_dir,
        offline=settings.offline,
    )
