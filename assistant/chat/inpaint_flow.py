"""The inpaint part of the picture-in flow: "Inpaint a region" → a mask → inpaint.

:class:`InpaintSteps` is a mixin of :class:`assistant.chat.vision_flow.VisionFlow` (which
owns the uploads, descriptions, requests and the runner): "Inpaint a region" shows the
``MaskPainter`` element; it answers with the :data:`MASK_ACTION` action, handled by
:meth:`~InpaintSteps.on_mask`: caption the crop under the mask → propose a prompt for that
area only → inpaint → before/after. Until then the chat's
:class:`~assistant.chat.state.InpaintState` remembers the image, so a typed ``x,y,w,h``
box (:meth:`~InpaintSteps.on_message`) or an uploaded mask
(:meth:`~InpaintSteps.on_mask_upload`) does the same.

This module also holds what both halves share: the :class:`VisionUI` protocol and the
small text and size helpers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import math
import re
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from assistant.chat.state import ChatState
from assistant.prompting.spec import Family
from assistant.studio.actions import ActionKind, ActionSpec, ImagePayload, MaskPayload
from assistant.studio.hires import inpaint_pixels
from tools.core.engine import GeneratedImage
from tools.core.messages import lang_code, msg
from tools.core.request import MAX_PIXELS, MAX_SIDE, ImageRequest
from tools.core.settings import Settings
from vision.caption import Captioner, ImageDescription
from vision.masks import Mask, mask_from_box, mask_from_data_url, mask_from_image
from vision.uploads import Upload, load_upload, uploads_dir

# The inpaint buttons (see assistant.studio.actions); the painter calls USE_MASK itself.
INPAINT_REGION = ActionKind("vision_inpaint", ImagePayload)
USE_MASK = ActionKind("egaki_mask", MaskPayload)
INPAINT, MASK_ACTION = INPAINT_REGION.name, USE_MASK.name  # the wire names
# "x,y,w,h what to paint" right after "Inpaint a region": a box mask (pixels or fractions)
_NUM = r"\s*[\d.]+\s*"
BOX = re.compile(rf"^(?P<box>{_NUM},{_NUM},{_NUM},{_NUM})(?P<rest>.*)$", re.S)
# Pixel budget per family for img2img/inpaint at the image's own shape.
WORK_PIXELS = {"sd15": 768 * 1024, "sdxl": 1536 * 1536}
PREVIEW_SIDE = 1024  # the painter's background; the mask still comes back at full size
_MD_SPECIAL = re.compile(r"([\\`*_\[\]()<>!#|~])")


class VisionUI(Protocol):
    """What the vision flow needs from the front end (the studio's two, plus two more)."""

    async def say(self, text: str) -> None: ...
    async def show(self, text: str, actions: list[ActionSpec]) -> None: ...

    async def show_images(self, text: str, images: list[Path], actions: list[ActionSpec]) -> None:
        """Show ``text``, then the image files (``Path``s) in order, then the buttons."""
        ...

    async def show_mask_painter(self, text: str, props: dict[str, Any]) -> None:
        """Show ``text`` with ``cl.CustomElement(name="MaskPainter", props=props)``."""
        ...


def plain(text: str) -> str:
    """Model text made inert for Markdown (no links or remote images can render)."""
    return _MD_SPECIAL.sub(r"\\\1", text.replace("\n", " "))


def fit_size(width: int, height: int, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """The image's shape within ``max_pixels`` and the engine's limits, sides multiples of 8."""
    scale = min(1.0, math.sqrt(max_pixels / (width * height)), MAX_SIDE / max(width, height))
    return (max(64, int(width * scale) // 8 * 8), max(64, int(height * scale) // 8 * 8))


def preview_data_url(path: Path, max_side: int = PREVIEW_SIDE) -> str:
    """A small JPEG data URL of the image at ``path`` for the painter's background."""
    with Image.open(path) as im:
        small = im.convert("RGB")
    small.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def mask_data_url(mask: Image.Image, max_side: int = PREVIEW_SIDE) -> str:
    """A black-and-white PNG data URL of ``mask`` at most ``max_side`` a side (the painter
    scales it to the image)."""
    small = mask.convert("L")
    small.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    small.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class InpaintSteps:
    """The inpaint steps of :class:`~assistant.chat.vision_flow.VisionFlow` (a mixin).

    The attributes and the four methods below the annotations are the vision flow's.
    """

    captioner: Captioner
    settings: Settings
    state: ChatState
    family: Family
    inpaint_strength: float
    overrides: dict[str, Any]

    @property
    def lang(self) -> str:
        return self.state.lang

    def upload(self, image_id: str) -> Upload:
        raise NotImplementedError

    async def description(self, image_id: str) -> ImageDescription:
        raise NotImplementedError

    def _request(self, prompt: str, negative: str, width: int, height: int, **extra: Any
                 ) -> ImageRequest:  # fmt: skip
        raise NotImplementedError

    async def _run(
        self, request: ImageRequest, ui: VisionUI, before: Upload | None = None
    ) -> tuple[list[GeneratedImage], list[Path]]:
        raise NotImplementedError

    @property
    def awaiting_mask(self) -> str | None:
        """The image waiting for a mask after "Inpaint a region", if any."""
        return self.state.inpaint.awaiting_mask

    async def _inpaint(self, payload: ImagePayload, ui: VisionUI) -> None:
        props = self.painter_props(payload.image_id)
        self.state.inpaint.awaiting_mask = payload.image_id  # a box or a mask upload also do
        await ui.show_mask_painter(msg("paint_mask", self.lang), props)

    async def _use_mask(self, payload: MaskPayload, ui: VisionUI) -> None:
        await self.on_mask(payload.image_id, payload.mask, payload.instruction, ui)

    # --- the mask as a message or an upload ----------------------------------------------------
    def wants_message(self, text: str) -> bool:
        """True when ``text`` is a typed ``x,y,w,h`` box for the image awaiting a mask."""
        return self.awaiting_mask is not None and BOX.match(text) is not None

    async def on_message(self, text: str, ui: VisionUI) -> None:
        """``x,y,w,h what to paint`` after "Inpaint a region": inpaint that box."""
        box, image_id = BOX.match(text), self.awaiting_mask
        if box is None or image_id is None:
            return  # not a box for a pending inpaint: ask wants_message first
        self.state.inpaint.awaiting_mask = None
        await self.on_mask(image_id, box.group("box"), box.group("rest"), ui)

    async def on_mask_upload(
        self, path: Path, name: str, mime: str, instruction: str, ui: VisionUI
    ) -> None:
        """A black-and-white mask file uploaded after "Inpaint a region" (white = change).

        The wait ends here, even when the file turns out not to be a usable image."""
        image_id = self.awaiting_mask
        if image_id is None:
            return  # nothing is waiting for a mask: ask awaiting_mask first
        self.state.inpaint.awaiting_mask = None
        upload = await asyncio.to_thread(load_upload, path, self.settings, name=name, mime=mime)
        await self.on_mask(image_id, upload.open(), instruction, ui)

    def painter_props(
        self, image_id: str, *, ask: bool = False, mask: Image.Image | None = None,
        instruction: str = "",
    ) -> dict[str, Any]:  # fmt: skip
        """Props for ``MaskPainter``; ``ask=True`` when shown with ``AskElementMessage``;
        ``mask`` (white = change) is painted in already, ``instruction`` typed in already."""
        up = self.upload(image_id)
        props: dict[str, Any] = {
            "src": preview_data_url(up.path),
            "image_id": up.id,
            "width": up.width,
            "height": up.height,
            "lang": lang_code(self.lang),
            "action": MASK_ACTION,
            "submit": ask,
        }
        if mask is not None:
            props["mask"] = mask_data_url(mask)
        if instruction:
            props["instruction"] = instruction[:500]
        return props

    # --- inpainting ----------------------------------------------------------------------------
    def decode_mask(self, upload: Upload, mask: str | Mask | Image.Image) -> Mask:
        """A painter data URL, an ``x,y,w,h`` box, a mask image or a :class:`Mask`."""
        size = (upload.width, upload.height)
        if isinstance(mask, Mask):
            return mask if mask.size == size else mask_from_image(mask.image, size)
        if isinstance(mask, Image.Image):
            return mask_from_image(mask, size)
        if str(mask).lstrip().lower().startswith("data:"):
            return mask_from_data_url(str(mask), size)
        return mask_from_box(str(mask), size)

    async def on_mask(
        self, image_id: str, mask: str | Mask | Image.Image, instruction: str, ui: VisionUI
    ) -> tuple[list[GeneratedImage], list[Path]]:
        """Caption the masked crop, propose a local prompt, inpaint, show before/after.

        Two VLM calls (region caption, then the inpaint prompt), three when the picture
        has not been described yet. Returns the runner's images and paths.
        """
        up = self.upload(image_id)
        binary = self.decode_mask(up, mask)
        for warning in binary.warnings(self.lang):
            await ui.say(warning)
        digest = hashlib.sha256(binary.image.tobytes()).hexdigest()[:8]
        mask_path = binary.save(uploads_dir(self.settings), f"{up.id}-mask-{digest}")

        full = await self.description(image_id)
        image = up.open()
        region = await self.captioner.describe_region(image, binary, lang=self.lang)
        proposal = await self.captioner.propose_inpaint_prompt(
            full, region, instruction, lang=self.lang
        )
        await ui.say(
            msg("inpaint_plan", self.lang, region=plain(region.summary or region.caption),
               prompt=proposal.prompt.replace("`", "'"))
        )  # fmt: skip

        width, height = fit_size(up.width, up.height, inpaint_pixels(WORK_PIXELS[self.family],
                                 self.overrides.get("inpaint_area"), self.settings.inpaint_area))
        request = self._request(
            proposal.prompt, proposal.negative, width, height, init_image=up.path,
            mask_image=mask_path, strength=self.inpaint_strength, batch_size=1,
        )  # fmt: skip
        return await self._run(request, ui, before=up)
