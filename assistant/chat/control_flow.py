"""Keep the pose, composition, outlines or depth of an uploaded picture (ControlNet).

1. After an upload, :meth:`ControlFlow.offer` shows "Keep this pose / this composition /
   these outlines / this depth" buttons — only those whose preprocessor can run here; the
   others are named with the reason (e.g. offline with no annotator model on disk).
2. A press (:data:`KEEP_CONTROL`) makes the control map in a worker thread, saves it next to
   the upload and shows it to the person.
3. With the chat's current prompt (the prompt card's, when there is one) it generates
   under that control right away; otherwise it asks what to draw and the next message's
   words become an English prompt (``write_prompt``). The size follows the picture's
   aspect at the model's native size; the request carries one
   :class:`~tools.core.request.ControlUnit`.

:meth:`ControlFlow.units` serves the agent's ``generate_image(control=…)``: the same maps
from the last upload, so "use the pose from the photo I sent" works in free chat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal, Protocol, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from assistant.prompting.spec import Family, aspect_of, merge_negative, native_size
from assistant.studio.actions import ActionKind, ActionSpec, ActionTable, Payload
from assistant.studio.flow import Runner
from prompts.loader import render
from tools.core.errors import EgakiError, InvalidRequest
from tools.core.messages import msg
from tools.core.request import ControlUnit, parse_request
from tools.core.settings import Settings
from tools.llm.text import model_prompt
from vision.control.annotators import ANNOTATORS, MapKind, on_disk, unusable
from vision.control.maps import MODULE, Preprocessors
from vision.uploads import Upload, upload_path, uploads_dir

log = logging.getLogger(__name__)

Keep = Literal["pose", "composition", "outlines", "depth"]
# What each button keeps: the map kind, its weight and guidance end. "Composition" is a
# softer depth: the layout is held early and the details are left free.
KEEPS: dict[Keep, tuple[MapKind, float, float]] = {
    "pose": ("openpose", 1.0, 1.0),
    "composition": ("depth", 0.6, 0.6),
    "outlines": ("canny", 1.0, 1.0),
    "depth": ("depth", 1.0, 1.0),
}


class KeepPayload(Payload):
    """Which upload, and what to keep of it."""

    image_id: str
    keep: Keep


KEEP_CONTROL = ActionKind("control_keep", KeepPayload)
PromptWriter = Callable[[str, str], Awaitable[str]]  # (words, lang) -> English prompt


class ControlUI(Protocol):
    async def say(self, text: str) -> None: ...
    async def show(self, text: str, actions: list[ActionSpec]) -> None: ...
    async def show_images(self, text: str, images: list[Path], actions: list[ActionSpec]) -> None:
        ...


class Overrides(Protocol):
    """Where the panel's overrides and presets live (the vision flow keeps them current)."""

    overrides: dict[str, object]
    presets: list[str] | None


async def _words_as_prompt(words: str, lang: str) -> str:
    return words


def english_prompt_writer(model: BaseChatModel) -> PromptWriter:
    """Words in any language → an English SD prompt with the chat model (the words
    themselves when the model fails: a picture is still better than an error)."""

    async def write(words: str, lang: str) -> str:
        messages = [SystemMessage(render("control_prompt.md")), HumanMessage(words)]
        try:
            reply = await model.ainvoke(messages)
        except Exception as err:  # the chat model is optional for this step
            log.info("prompt writer failed (%s); using the words", type(err).__name__)
            return words
        text = model_prompt(reply.content)
        return " ".join(text.split()) if isinstance(text, str) and text.strip() else words

    return write


class ControlFlow:
    """The "keep this …" buttons of one chat, and the control maps it has made."""

    def __init__(self, runner: Runner, settings: Settings, *, lang: Callable[[], str],
                 family: str = "sd15", panel: Overrides | None = None,
                 preprocessors: Preprocessors | None = None,
                 write_prompt: PromptWriter | None = None,
                 current_prompt: Callable[[], str | None] | None = None) -> None:
        self.runner = runner
        self.settings = settings
        self._lang = lang
        self.family = cast(Family, family if family in ("sd15", "sdxl") else "sd15")
        self.panel = panel
        self.preprocessors = preprocessors or Preprocessors(settings)
        self.write_prompt = write_prompt or _words_as_prompt
        self.current_prompt = current_prompt or (lambda: None)
        self.last_upload: str | None = None
        self.pending: tuple[str, Keep, Path] | None = None  # a map waiting for words
        self.table = ActionTable()
        self.table.add(KEEP_CONTROL, self.keep)

    @property
    def lang(self) -> str:
        return self._lang()

    def label(self, keep: Keep) -> str:
        labels = {"pose": msg("control_keep_pose", self.lang),
                  "composition": msg("control_keep_composition", self.lang),
                  "outlines": msg("control_keep_outlines", self.lang),
                  "depth": msg("control_keep_depth", self.lang)}
        return labels[keep]

    # --- 1. the offer ------------------------------------------------------------------
    async def offer(self, upload: Upload, ui: ControlUI) -> None:
        """The "keep this …" buttons for a fresh upload."""
        self.last_upload = upload.id
        buttons = []
        reasons: dict[MapKind, EgakiError | None] = {}
        missing: dict[str, list[str]] = {}  # reason -> the buttons it rules out
        for keep, (kind, _, _) in KEEPS.items():
            if kind not in reasons:
                reasons[kind] = unusable(kind, self.settings)
            why = reasons[kind]
            if why is None:
                payload = KeepPayload(image_id=upload.id, keep=keep)
                buttons.append(KEEP_CONTROL.button(self.label(keep), payload))
            else:
                missing.setdefault(why.localized(self.lang), []).append(self.label(keep))
        text = msg("control_offer", self.lang)
        for reason, names in missing.items():
            text += "\n\n" + msg("control_some_unusable", self.lang, names=", ".join(names),
                                 reason=reason)
        await ui.show(text, buttons)

    # --- 2. the map --------------------------------------------------------------------
    async def control_map(self, image_id: str, keep: Keep) -> Path:
        """Make (or reuse) the map of ``keep`` for the upload ``image_id``."""
        kind = KEEPS[keep][0]
        out = uploads_dir(self.settings) / f"{image_id}-control-{kind}.png"
        if not out.is_file():
            source = upload_path(self.settings, image_id)

            def make() -> None:
                from PIL import Image

                with Image.open(source) as im:
                    self.preprocessors.make(im.convert("RGB"), kind).save(out)

            await asyncio.to_thread(make)
        return out

    async def keep(self, payload: KeepPayload, ui: ControlUI) -> None:
        """A "keep this …" press: show the map, then draw (or ask what to draw)."""
        label = self.label(payload.keep)
        kind = KEEPS[payload.keep][0]
        if not await asyncio.to_thread(on_disk, kind, self.settings):
            await ui.say(msg("control_downloading", self.lang, needs=ANNOTATORS[kind].needs()))
        path = await self.control_map(payload.image_id, payload.keep)
        await ui.show_images(msg("control_map_shown", self.lang, keep=label), [path], [])
        prompt = self.current_prompt()
        if not prompt:
            self.pending = (payload.image_id, payload.keep, path)
            await ui.say(msg("control_ask_prompt", self.lang))
            return
        await ui.say(msg("control_using_prompt", self.lang, prompt=prompt.replace("`", "'")))
        await self.draw(payload.image_id, payload.keep, path, prompt, ui, written=True)

    # --- 3. the picture ----------------------------------------------------------------
    @property
    def wants_message(self) -> bool:
        """True while a shown map waits for what to draw."""
        return self.pending is not None

    async def on_message(self, text: str, ui: ControlUI) -> None:
        if self.pending is None:
            return
        image_id, keep, path = self.pending
        self.pending = None
        await self.draw(image_id, keep, path, text, ui)

    def unit(self, keep: Keep, path: Path) -> ControlUnit:
        kind, weight, end = KEEPS[keep]
        return ControlUnit(image=path, module=MODULE[kind], weight=weight, guidance_end=end)

    async def draw(self, image_id: str, keep: Keep, path: Path, words: str, ui: ControlUI,
                   *, written: bool = False) -> None:
        """Generate ``words`` (an English prompt when ``written``) under the map."""
        prompt = words if written else (await self.write_prompt(words, self.lang)).strip()
        prompt = prompt or words
        size = native_size(self.family, aspect_of(*self._size(image_id)))
        data: dict[str, object] = dict(self.panel.overrides) if self.panel else {}
        data = {k: v for k, v in data.items() if k not in ("width", "height")}
        presets = self.panel.presets if self.panel else None
        data |= {"prompt": prompt, "negative_prompt": merge_negative(self.family, "", presets),
                 "width": size[0], "height": size[1], "controls": [self.unit(keep, path)]}
        images, _ = await self.runner(parse_request(data))
        if images and (runtime := images[0].extra.get("ControlNet runtime")):
            await ui.say(msg("control_runtime", self.lang, runtime=runtime))

    def _size(self, image_id: str) -> tuple[int, int]:
        from PIL import Image

        with Image.open(upload_path(self.settings, image_id)) as im:
            return im.size

    # --- the agent's control argument ---------------------------------------------------
    async def units(self, keep: str) -> list[ControlUnit]:
        """One unit keeping ``keep`` of the last upload, for ``generate_image``."""
        if keep not in KEEPS:
            raise InvalidRequest.of("control_unknown_keep", keep=keep, choices=", ".join(KEEPS))
        if self.last_upload is None:
            raise InvalidRequest.of("control_no_upload")
        chosen = cast(Keep, keep)
        if (why := unusable(KEEPS[chosen][0], self.settings)) is not None:
            raise why
        path = await self.control_map(self.last_upload, chosen)
        return [self.unit(chosen, path)]
