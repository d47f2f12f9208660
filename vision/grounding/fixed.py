"""A segmenter with known answers: for tests and the offline demo (``EGAKI_SEGMENTER=fake``).

:class:`FixedSegmenter` answers every phrase with the boxes it was given (fractions of
the picture, ``(left, top, right, bottom)``), like a detector would; the default is one
box in the middle of the picture. It records the phrases it was asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image

from vision.grounding.regions import Candidate, box_candidate

CENTRE = (0.3, 0.3, 0.7, 0.7)


class FixedSegmenter:
    """:class:`~vision.grounding.regions.Segmenter` that finds ``boxes`` for any phrase."""

    name = "fixed boxes"

    def __init__(self, boxes: Sequence[tuple[float, float, float, float]] = (CENTRE,)) -> None:
        self.boxes = list(boxes)
        self.phrases: list[str] = []

    def find(self, image: Image.Image, phrase: str) -> list[Candidate]:
        self.phrases.append(phrase)
        w, h = image.size
        return [
            box_candidate(image.size, (round(l * w), round(t * h), round(r * w), round(b * h)))
            for l, t, r, b in self.boxes  # noqa: E741
        ]
