"""The segmenter the settings name: CLIPSeg (default) or the fixed boxes (``fake``)."""

from __future__ import annotations

from tools.core.settings import Settings
from vision.grounding.clipseg import ClipSegSegmenter
from vision.grounding.fixed import FixedSegmenter
from vision.grounding.regions import Segmenter


def make_segmenter(settings: Settings) -> Segmenter:
    """A segmenter for ``settings``; cheap (a model loads on its first search)."""
    if settings.segmenter == "fake":
        return FixedSegmenter()
    return ClipSegSegmenter(
        settings.segment_model,
        models_dir=settings.segment_models_dir,
        cache_dir=settings.hf_cache_dir,
        offline=settings.offline,
    )
