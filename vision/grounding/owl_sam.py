"""Boxes from words, refined to shapes: OWL-ViT / OWLv2 detections, each cut out by SAM.

A detector gives one box per *instance* ("two hats" are two boxes even when they touch,
where a heat map may merge them), and SAM (``SamModel``) turns each box into the object's
own outline; without SAM the boxes themselves are the masks. Both are used only when
their folders are on disk in ``EGAKI_SEGMENT_MODELS_DIR`` (:func:`find_folders`): this is
the sharper choice the ``auto`` segmenter takes over CLIPSeg. ``transformers`` and
``torch`` load on the first search.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tools.core.errors import CapabilityMissing
from tools.core.imports import serialized
from vision.grounding.regions import Candidate, box_candidate, broken_folder_errors
from vision.masks import Box

# Folder names looked for in the models folder (hub ids' last parts), best first.
DETECTORS = ("owlv2-base-patch16-ensemble", "owlv2-base-patch16", "owlvit-large-patch14",
             "owlvit-base-patch16", "owlvit-base-patch32")  # fmt: skip
SAMS = ("sam-vit-huge", "sam-vit-large", "sam-vit-base", "slimsam-77-uniform", "slimsam-50-uniform")
DETECTION_THRESHOLD = 0.1  # OWL's scores are low; its model card's examples use 0.1
SAME_THING_IOU = 0.5  # boxes overlapping this much are one object found twice


def find_folders(models_dir: Path | None) -> tuple[Path, Path | None] | None:
    """``(detector folder, SAM folder or None)`` in ``models_dir``, or None without a detector."""
    if models_dir is None:
        return None
    present = [Path(models_dir) / n for n in (*DETECTORS, *SAMS)]
    found = [p for p in present if (p / "config.json").is_file()]
    detector = next((p for p in found if p.name in DETECTORS), None)
    sam = next((p for p in found if p.name in SAMS), None)
    return (detector, sam) if detector is not None else None


def _pixels(box: np.ndarray) -> Box:
    left, top, right, bottom = (round(float(v)) for v in box)
    return left, top, right, bottom


def distinct(boxes: np.ndarray, scores: np.ndarray, iou: float = SAME_THING_IOU) -> list[int]:
    """Indices of the boxes to keep, best score first, dropping near-duplicates (NMS)."""
    kept: list[int] = []
    for i in np.argsort(-scores):
        x0, y0, x1, y1 = boxes[i]
        duplicate = False
        for j in kept:
            a0, b0, a1, b1 = boxes[j]
            inter = max(0.0, min(x1, a1) - max(x0, a0)) * max(0.0, min(y1, b1) - max(y0, b0))
            union = (x1 - x0) * (y1 - y0) + (a1 - a0) * (b1 - b0) - inter
            duplicate = duplicate or (union > 0 and inter / union >= iou)
        if not duplicate:
            kept.append(int(i))
    return kept


class OwlSamSegmenter:
    """:class:`~vision.grounding.regions.Segmenter` on an OWL detector (+ SAM when given)."""

    def __init__(self, detector: Path, sam: Path | None = None, *,
                 threshold: float = DETECTION_THRESHOLD) -> None:  # fmt: skip
        self.detector, self.sam, self.threshold = detector, sam, threshold
        self.name = f"{detector.name} + {sam.name}" if sam is not None else detector.name
        self._lock = threading.Lock()
        self._loaded: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        with self._lock:
            if self._loaded is None:
                self._loaded = serialized(self._load_now)
            return self._loaded

    def _load_now(self) -> dict[str, Any]:
        try:
            return self._read_folders()
        except broken_folder_errors() as err:  # a partial or foreign folder
            raise CapabilityMissing.of(
                "segment_model_broken", folder=str(self.detector.parent), error=str(err)[:200]
            ) from err

    def _read_folders(self) -> dict[str, Any]:
        from transformers import (
            AutoModelForZeroShotObjectDetection,
            AutoProcessor,
            SamModel,
            SamProcessor,
        )

        out: dict[str, Any] = {
            "processor": AutoProcessor.from_pretrained(self.detector, local_files_only=True),
            "detector": AutoModelForZeroShotObjectDetection.from_pretrained(
                self.detector, local_files_only=True).eval(),
        }  # fmt: skip
        if self.sam is not None:
            out["sam_processor"] = SamProcessor.from_pretrained(self.sam, local_files_only=True)
            out["sam"] = SamModel.from_pretrained(self.sam, local_files_only=True).eval()
        return out

    def boxes(self, image: Image.Image, phrase: str) -> tuple[np.ndarray, np.ndarray]:
        """The detector's boxes (pixels, ``x0, y0, x1, y1``) and scores for ``phrase``."""
        import torch

        parts = self._load()
        processor, detector = parts["processor"], parts["detector"]
        inputs = processor(text=[[phrase]], images=image.convert("RGB"), return_tensors="pt")
        with torch.inference_mode():
            outputs = detector(**inputs)
        side = max(image.size)  # OWLv2 sees the picture padded to a square
        size = (side, side) if detector.config.model_type == "owlv2" else image.size[::-1]
        found = processor.image_processor.post_process_object_detection(
            outputs, threshold=self.threshold, target_sizes=[size])[0]  # fmt: skip
        boxes = found["boxes"].float().numpy().reshape(-1, 4)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, image.width)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, image.height)
        return boxes, found["scores"].float().numpy().reshape(-1)

    def find(self, image: Image.Image, phrase: str) -> list[Candidate]:
        """One candidate per distinct detection, cut to its shape by SAM when present."""
        boxes, scores = self.boxes(image, phrase)
        keep = [i for i in distinct(boxes, scores)
                if boxes[i][2] - boxes[i][0] >= 1 and boxes[i][3] - boxes[i][1] >= 1]  # fmt: skip
        if not keep:
            return []
        if self.sam is None:
            return [box_candidate(image.size, _pixels(boxes[i]), float(scores[i])) for i in keep]
        return self._shapes(image, boxes[keep], scores[keep])

    def _shapes(self, image: Image.Image, boxes: np.ndarray, scores: np.ndarray
                ) -> list[Candidate]:  # fmt: skip
        import torch

        parts = self._load()
        processor, sam = parts["sam_processor"], parts["sam"]
        inputs = processor(images=image.convert("RGB"), input_boxes=[boxes.tolist()],
                           return_tensors="pt")  # fmt: skip
        with torch.inference_mode():
            out = sam(**inputs, multimask_output=False)
        sizes = (inputs["original_sizes"], inputs["reshaped_input_sizes"])
        masks = processor.image_processor.post_process_masks(out.pred_masks, *sizes)[0]
        found = []
        for mask, box, score in zip(masks[:, 0].numpy(), boxes, scores, strict=True):
            shape = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8))
            bbox = shape.getbbox()
            if bbox is None:  # SAM found nothing inside the box: the box itself
                found.append(box_candidate(image.size, _pixels(box), float(score)))
            else:
                found.append(Candidate(shape, bbox, float(score)))
        return found
