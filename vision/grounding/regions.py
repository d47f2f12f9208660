"""Candidate regions for a phrase, picking one by position, and the "which one?" preview.

A :class:`Segmenter` turns ``(image, phrase)`` into :class:`Candidate` regions, each a
binary mask at the image's size with its bounding box and a score. Several separate
candidates are an ambiguity the chat asks about; words such as "left" or "the second"
resolve it (:func:`pick`) without asking.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vision.masks import Box

Position = Literal["none", "left", "right", "top", "bottom", "center", "biggest", "smallest",
                   "all"]  # fmt: skip
POSITIONS: tuple[Position, ...] = ("none", "left", "right", "top", "bottom", "center",
                                   "biggest", "smallest", "all")  # fmt: skip
MIN_AREA_FRAC = 0.002  # of the picture: smaller blobs are noise, not a candidate
MIN_SHARE_OF_BIGGEST = 0.15  # a blob this much smaller than the biggest one is noise too
MAX_REGIONS = 8  # more look-alikes than this: the biggest ones (a question has a button each)
OUTLINE_COLOURS = ((255, 45, 85), (0, 160, 255), (255, 190, 0), (0, 200, 120), (190, 80, 255))


@dataclass(frozen=True)
class Candidate:
    """One region found for a phrase: ``mask`` (``L``, 0/255, image size), its box, a score."""

    mask: Image.Image
    box: Box
    score: float

    @property
    def area(self) -> int:
        return int(self.mask.histogram()[255])

    @property
    def centre(self) -> tuple[float, float]:
        left, top, right, bottom = self.box
        return (left + right) / 2, (top + bottom) / 2


class Segmenter(Protocol):
    """Finds the regions ``phrase`` names in ``image`` (blocking; call it off the loop)."""

    name: str

    def find(self, image: Image.Image, phrase: str) -> list[Candidate]: ...


def broken_folder_errors() -> tuple[type[Exception], ...]:
    """What loading a partial or foreign model folder raises (hub config checks included).
    A function: an ``except`` clause evaluates it only when something was raised."""
    from huggingface_hub.errors import StrictDataclassError

    return (OSError, ValueError, KeyError, TypeError, StrictDataclassError)


def box_candidate(size: tuple[int, int], box: Box, score: float = 1.0) -> Candidate:
    """A rectangular candidate (a detector's box) at an image of ``size``."""
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return Candidate(mask, box, score)


def components(heat: np.ndarray, size: tuple[int, int], threshold: float,
               limit: int = MAX_REGIONS) -> list[Candidate]:  # fmt: skip
    """Separate regions of ``heat`` (values 0–1, any resolution) above ``threshold``, as
    candidates at the image's ``size``, the ``limit`` biggest, biggest first; specks are
    dropped."""
    from scipy import ndimage  # with numpy already; only the search needs it

    binary = heat >= threshold
    labels, count = ndimage.label(binary)
    if count == 0:
        return []
    areas = ndimage.sum_labels(binary, labels, index=range(1, count + 1))
    keep_from = max(MIN_AREA_FRAC * binary.size, MIN_SHARE_OF_BIGGEST * float(areas.max()))
    found: list[Candidate] = []
    biggest = [int(i) + 1 for i in np.argsort(-areas)[:limit] if areas[i] >= keep_from]
    for index in biggest:  # only these are scaled up to the picture's size
        part = labels == index
        small = Image.fromarray(np.where(part, 255, 0).astype(np.uint8))
        mask = small.resize(size, Image.Resampling.BILINEAR).point(lambda v: 255 if v >= 128 else 0)
        box = mask.getbbox()
        if box is not None:
            found.append(Candidate(mask, box, float(heat[part].mean())))
    return sorted(found, key=lambda c: c.area, reverse=True)


def in_reading_order(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Left to right (then top to bottom): the order "the first / second one" counts in."""
    return sorted(candidates, key=lambda c: (c.centre[0], c.centre[1]))


def pick(candidates: Sequence[Candidate], position: Position = "none",
         ordinal: int | None = None) -> list[Candidate]:  # fmt: skip
    """The candidates the words point at: one for a position or an ordinal, all for
    "all"; all of them, unchanged, when the words say nothing (the caller asks then)."""
    found = in_reading_order(candidates)
    if not found or (position == "none" and ordinal is None) or position == "all":
        return found
    if position in ("top", "bottom"):
        found.sort(key=lambda c: c.centre[1])
    elif position in ("biggest", "smallest"):
        found.sort(key=lambda c: c.area)
    elif position == "center":
        left = min(c.box[0] for c in found)
        right = max(c.box[2] for c in found)
        top, bottom = min(c.box[1] for c in found), max(c.box[3] for c in found)
        mid = ((left + right) / 2, (top + bottom) / 2)
        found.sort(key=lambda c: (c.centre[0] - mid[0]) ** 2 + (c.centre[1] - mid[1]) ** 2)
        return found[:1]
    if ordinal is not None:  # "the second hat (from the left / from the top)"
        index = ordinal - 1
        if position in ("right", "bottom", "biggest"):
            index = len(found) - ordinal
        return [found[index]] if 0 <= index < len(found) else []
    last = position in ("right", "bottom", "biggest")
    return [found[-1] if last else found[0]]


def union(candidates: Sequence[Candidate]) -> Image.Image:
    """One mask covering every candidate."""
    out = np.zeros(np.asarray(candidates[0].mask).shape, dtype=bool)
    for c in candidates:
        out |= np.asarray(c.mask) >= 128
    return Image.fromarray(np.where(out, 255, 0).astype(np.uint8))


def outlined(image: Image.Image, candidates: Sequence[Candidate],
             max_side: int = 1024) -> Image.Image:  # fmt: skip
    """``image`` (scaled to ``max_side``) with each candidate outlined and numbered 1, 2, …"""
    im = image.convert("RGB")
    scale = min(1.0, max_side / max(im.size))
    if scale < 1:
        im = im.resize((round(im.width * scale), round(im.height * scale)),
                       Image.Resampling.LANCZOS)  # fmt: skip
    draw = ImageDraw.Draw(im)
    width = max(2, round(max(im.size) / 150))
    font = ImageFont.load_default(size=max(12, round(max(im.size) / 22)))
    for number, c in enumerate(candidates, start=1):
        colour = OUTLINE_COLOURS[(number - 1) % len(OUTLINE_COLOURS)]
        box = tuple(round(v * scale) for v in c.box)
        draw.rectangle(box, outline=colour, width=width)
        label_at = (box[0] + width + 2, box[1] + width)
        draw.text(label_at, str(number), fill=colour, font=font, stroke_width=2,
                  stroke_fill=(0, 0, 0))  # fmt: skip
    return im
