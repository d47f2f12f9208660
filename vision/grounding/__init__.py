"""Masks from words: find the region a phrase names ("hat") in a picture.

* :mod:`vision.grounding.regions` — :class:`Candidate` regions, the :class:`Segmenter`
  protocol, connected components of a heat map, picking by position ("the one on the
  left") and the outlined "which one?" preview;
* :mod:`vision.grounding.clipseg` — the default segmenter, CLIPSeg through
  ``transformers`` (imported lazily, on the first search);
* :mod:`vision.grounding.owl_sam` — OWL-ViT/OWLv2 boxes (one per instance) cut to shape
  by SAM, used when their folders are on disk;
* :mod:`vision.grounding.fixed` — a segmenter with known boxes (tests, ``EGAKI_SEGMENTER=fake``);
* :mod:`vision.grounding.factory` — the segmenter the settings name.
"""
