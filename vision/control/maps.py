"""Turn a reference picture into a control map for one ControlNet kind.

``Preprocessors(settings).make(image, kind)`` returns an RGB map the size of ``image``:

* ``canny`` — white outlines on black (:mod:`.canny`, no model);
* ``depth`` — near is bright (Depth Anything V2 small through ``transformers``);
* ``openpose`` — OpenPose-style coloured skeletons on black, from RT-DETR person boxes and
  ViTPose keypoints (COCO's 17 points, plus the neck OpenPose has);
* ``lineart`` / ``softedge`` — ``controlnet-aux``'s networks, when that package imports.

Annotator models load on first use and stay loaded in this object (one per chat app).
Everything here is slow on a CPU (seconds): call it from a worker thread.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from PIL import Image, ImageDraw

from tools.core.errors import InvalidRequest, ModelMissing
from tools.core.events import EngineEventSink
from tools.core.settings import Settings
from vision.control.annotators import MapKind, fetch
from vision.control.canny import canny

log = logging.getLogger(__name__)

# A1111 module names for the maps made here (what the infotext records).
MODULE: dict[MapKind, str] = {"canny": "canny", "depth": "depth_anything_v2",
                              "openpose": "openpose", "lineart": "lineart_realistic",
                              "softedge": "softedge_hed"}
# OpenPose's 18 points from COCO's 17 (index 1, the neck, is the shoulders' midpoint).
_COCO_TO_OPENPOSE = [0, -1, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]
_LIMBS = [(1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
          (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17)]
_COLOURS = [(255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0),
            (85, 255, 0), (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255),
            (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255), (170, 0, 255),
            (255, 0, 255), (255, 0, 170), (255, 0, 85)]
MIN_SCORE = 0.3


class Preprocessors:
    """Makes control maps; holds the annotator models it has loaded."""

    def __init__(self, settings: Settings, on_event: EngineEventSink | None = None) -> None:
        self.settings = settings
        self.on_event = on_event
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()

    def make(self, image: Image.Image, kind: MapKind) -> Image.Image:
        """The control map of ``image`` for ``kind`` (same size, RGB)."""
        image = image.convert("RGB")
        if kind == "canny":
            return canny(image)
        with self._lock:
            if kind == "depth":
                return self._depth(image)
            if kind == "openpose":
                return self._pose(image)
            return self._aux(image, kind)

    def _load(self, key: str, build: Any) -> Any:
        if key not in self._models:
            self._models[key] = build()
        return self._models[key]

    def _depth(self, image: Image.Image) -> Image.Image:
        from transformers import pipeline

        (folder,) = fetch("depth", self.settings, self.on_event)
        estimator = self._load("depth", lambda: pipeline("depth-estimation", model=str(folder),
                                                         device="cpu"))
        depth = estimator(image)["depth"]
        return depth.convert("RGB").resize(image.size, Image.Resampling.BILINEAR)

    def _pose(self, image: Image.Image) -> Image.Image:
        import torch
        from transformers import AutoProcessor, RTDetrForObjectDetection, VitPoseForPoseEstimation

        det_dir, pose_dir = fetch("openpose", self.settings, self.on_event)
        det_proc, det = self._load("person", lambda: (
            AutoProcessor.from_pretrained(det_dir),
            RTDetrForObjectDetection.from_pretrained(det_dir)))
        pose_proc, pose = self._load("pose", lambda: (
            AutoProcessor.from_pretrained(pose_dir),
            VitPoseForPoseEstimation.from_pretrained(pose_dir)))
        with torch.inference_mode():
            found = det_proc.post_process_object_detection(
                det(**det_proc(images=image, return_tensors="pt")),
                target_sizes=torch.tensor([(image.height, image.width)]), threshold=MIN_SCORE,
            )[0]
            boxes = found["boxes"][found["labels"] == 0].numpy()  # COCO class 0: person
            if len(boxes) == 0:
                raise InvalidRequest.of("control_no_person")
            boxes[:, 2:] -= boxes[:, :2]  # (x1, y1, x2, y2) -> (x, y, w, h)
            inputs = pose_proc(image, boxes=[boxes], return_tensors="pt")
            people = pose_proc.post_process_pose_estimation(pose(**inputs), boxes=[boxes])[0]
        skeletons = [(p["keypoints"].numpy(), p["scores"].numpy()) for p in people]
        return draw_openpose(image.size, skeletons)

    def _aux(self, image: Image.Image, kind: MapKind) -> Image.Image:
        paths = fetch(kind, self.settings, self.on_event)
        try:
            if kind == "lineart":
                from controlnet_aux import LineartDetector as Detector
            else:
                from controlnet_aux import HEDdetector as Detector
        except Exception as err:  # ImportError, or torchvision built for another torch
            raise ModelMissing.of("control_aux_broken", kind=kind,
                                  error=f"{type(err).__name__}: {err}"[:200]) from err
        detector = self._load(kind, lambda: Detector.from_pretrained(str(paths[0].parent)))
        out = detector(image, output_type="pil")
        return out.convert("RGB").resize(image.size, Image.Resampling.BILINEAR)


def draw_openpose(size: tuple[int, int], people: list[tuple[Any, Any]]) -> Image.Image:
    """OpenPose-style skeletons (its limb colours, on black) from COCO keypoints/scores."""
    canvas = Image.new("RGB", size)
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(max(size) / 128))
    for keypoints, scores in people:
        points: list[tuple[float, float] | None] = []
        for coco in _COCO_TO_OPENPOSE:
            if coco < 0:  # the neck: between the shoulders (COCO 5 and 6)
                ok = scores[5] >= MIN_SCORE and scores[6] >= MIN_SCORE
                mid = (keypoints[5] + keypoints[6]) / 2
                points.append((float(mid[0]), float(mid[1])) if ok else None)
            else:
                ok = scores[coco] >= MIN_SCORE
                points.append((float(keypoints[coco][0]), float(keypoints[coco][1]))
                              if ok else None)
        for i, (a, b) in enumerate(_LIMBS):
            pa, pb = points[a], points[b]
            if pa is not None and pb is not None:
                colour = tuple(int(c * 0.6) for c in _COLOURS[i])
                draw.line([pa, pb], fill=colour, width=width * 2)
        for i, point in enumerate(points):
            if point is not None:
                x, y = point
                draw.ellipse([x - width, y - width, x + width, y + width], fill=_COLOURS[i])
    return canvas
