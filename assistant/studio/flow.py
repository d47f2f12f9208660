"""The image-making flow of one chat: interview → prompt card → images → next steps.

UI-agnostic like :mod:`assistant.chat.conversation`: it asks a :class:`StudioUI` to show text
and buttons (:class:`ActionSpec`) and receives button presses through :meth:`on_action`.
Images are made by a ``runner`` (the same :class:`assistant.studio.runner.ImageRunner` the
``generate_image`` tool uses), so every path saves, embeds metadata and displays alike.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel

from assistant.prompting.builder import SpecBuilder
from assistant.prompting.interview import Interviewer, InterviewState
from assistant.prompting.spec import PromptSpec
from assistant.prompting.spec_card import render_card
from assistant.studio.best_of import BestOf
from assistant.studio.panel import PanelChoice
from tools.core.engine import GeneratedImage
from tools.core.errors import InvalidRequest
from tools.core.messages import msg
from tools.core.request import MAX_PIXELS, MAX_SIDE, ImageRequest
from tools.llm.structured import LLMCallCounter

log = logging.getLogger(__name__)

Runner = Callable[[ImageRequest], Awaitable[tuple[list[GeneratedImage], list[Path]]]]
# A1111's token count of a prompt for the card (the engine's ``count_tokens``); returns
# None when no tokenizer is at hand. Called in a worker thread (it may read files).
TokenCounter = Callable[[str], Any]
MORE_COUNT = 4
VARIATION_COUNT = 4


@dataclass(frozen=True)
class ActionSpec:
    """A button: ``name`` routes it back to :meth:`Studio.on_action`."""

    name: str
    label: str
    payload: dict[str, Any] = field(default_factory=dict)


class StudioUI(Protocol):
    async def say(self, text: str) -> None: ...
    async def show(self, text: str, actions: list[ActionSpec]) -> None: ...


def upscale_size(width: int, height: int, factor: float = 2.0) -> tuple[int, int] | None:
    """The largest size up to ``factor``× that the engine accepts, or None if no bigger."""
    for f in (factor, 1.5, 1.25):
        w, h = int(width * f) // 8 * 8, int(height * f) // 8 * 8
        if w <= MAX_SIDE and h <= MAX_SIDE and w * h <= MAX_PIXELS and w > width:
            return w, h
    return None


class Studio:
    """Holds the interview, the current prompt spec and the last images of one chat."""

    def __init__(
        self,
        model: BaseChatModel,
        runner: Runner,
        *,
        family: str = "sd15",
        lang: str = "en",
        counter: LLMCallCounter | None = None,
        overrides: Mapping[str, Any] | None = None,
        best_of: BestOf | None = None,
        best_of_default: bool = False,
        token_counter: TokenCounter | None = None,
    ) -> None:
        self.counter = counter or LLMCallCounter()
        self.token_counter = token_counter
        self.interviewer = Interviewer(model, counter=self.counter)
        self.builder = SpecBuilder(model, counter=self.counter)
        self.runner = runner
        self.family = family if family in ("sd15", "sdxl") else "sd15"
        self.state = InterviewState.start(lang)
        self.overrides: dict[str, Any] = dict(overrides or {})
        self.spec: PromptSpec | None = None
        self.variants: list[PromptSpec] = []
        self.last: list[tuple[GeneratedImage, Path]] = []
        self.awaiting_tweak = False
        self.images_made = 0
        self.presets: list[str] | None = None  # negative preset groups; None = all
        self.seed_lock = False
        self.best_of: BestOf | None = best_of
        self.use_best_of = best_of is not None and best_of_default

    def apply_panel(self, choice: PanelChoice) -> None:
        """Use the chat settings panel's choices from the next image on."""
        self.overrides = dict(choice.overrides)
        self.presets = choice.presets
        self.seed_lock = choice.seed_lock
        if choice.best_of is not None:
            self.use_best_of = choice.best_of and self.best_of is not None

    def _request_overrides(self, extra: Mapping[str, Any] | None) -> dict[str, Any]:
        out = dict(self.overrides)
        if self.seed_lock and self.last and "seed" not in out:
            out["seed"] = self.last[0][0].seed
        out.update(extra or {})
        return out

    @property
    def lang(self) -> str:
        return self.state.language

    @property
    def wants_message(self) -> bool:
        """True while the next user message belongs to this flow, not the free chat."""
        return not self.state.done or self.awaiting_tweak

    def reset(self, lang: str | None = None) -> None:
        self.state = InterviewState.start(lang or self.lang)
        self.spec, self.variants, self.awaiting_tweak = None, [], False

    # --- persistence -------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """JSON-safe state, so a resumed thread carries on where it stopped."""
        return {
            "state": self.state.model_dump(mode="json"),
            "spec": self.spec.model_dump(mode="json") if self.spec else None,
            "last": [
                {"request": g.request.model_dump(mode="json"), "seed": g.seed, "path": str(p)}
                for g, p in self.last
            ],
            "awaiting_tweak": self.awaiting_tweak,
        }

    def restore(self, data: Mapping[str, Any]) -> None:
        """Undo :meth:`snapshot`; images whose files are gone are skipped."""
        from PIL import Image

        self.state = InterviewState.model_validate(data["state"])
        self.spec = PromptSpec.model_validate(data["spec"]) if data.get("spec") else None
        self.awaiting_tweak = bool(data.get("awaiting_tweak"))
        self.last = []
        for item in data.get("last", []):
            path = Path(item["path"])
            if not path.is_file():
                continue
            with Image.open(path) as im:
                image = im.convert("RGB")
            request = ImageRequest.model_validate(item["request"])
            self.last.append((GeneratedImage(image=image, request=request, seed=item["seed"]),
                              path))

    # --- messages ----------------------------------------------------------------------

    async def on_message(self, text: str, ui: StudioUI) -> None:
        if self.awaiting_tweak:
            await self._tweak(text, ui)
            return
        result = await self.interviewer.step(self.state, text)
        self.state = result.state
        await ui.say(result.message())
        if result.ready:
            self.spec = await self._build(self.state)
            await self.draw(self.spec, ui)

    async def _tweak(self, text: str, ui: StudioUI) -> None:
        """Rewrite the spec with the change, keeping the last seed (one LLM call)."""
        self.awaiting_tweak = False
        state = self.state.model_copy(deep=True)
        state.user_words.append(text)
        seed = self.last[0][0].seed if self.last else None
        self.state = state
        self.spec = await self._build(state)
        await self.draw(self.spec, ui, {"seed": seed} if seed is not None else None)

    async def _build(self, state: InterviewState) -> PromptSpec:
        return await self.builder.build(state, self.family, self.presets)  # type: ignore[arg-type]

    # --- drawing -----------------------------------------------------------------------

    async def draw(
        self, spec: PromptSpec, ui: StudioUI, extra: Mapping[str, Any] | None = None
    ) -> None:
        """Show the card, make the images, then offer the next steps."""
        request = spec.to_image_request(self._request_overrides(extra))
        await ui.show(render_card(spec, self.lang, await self.token_counts(spec)), [])
        if self.best_of is not None and self.use_best_of:
            self.last = await self.best_of.run(spec, request, ui.say)
            self.images_made += len(self.last)
            await ui.show(msg("after_images", self.lang), self.actions())
            return
        await self._run(request, ui)

    async def token_counts(self, spec: PromptSpec) -> tuple[Any, Any]:
        """(prompt, negative) token counts for the card; (None, None) without a counter."""
        count = self.token_counter
        if count is None:
            return None, None
        return await asyncio.to_thread(lambda: (count(spec.positive), count(spec.negative)))

    async def _run(self, request: ImageRequest, ui: StudioUI) -> None:
        images, paths = await self.runner(request)
        self.last = list(zip(images, paths, strict=True))
        self.images_made += len(images)
        await ui.show(msg("after_images", self.lang), self.actions())

    def actions(self) -> list[ActionSpec]:
        lang = self.lang
        previews = [g for g, _ in self.last if g.request.fast]
        acts = [  # after quick previews: render the one you like at full quality
            ActionSpec("full", msg("act_full", lang, n=i + 1), {"seed": g.seed})
            for i, g in enumerate(previews[:MORE_COUNT])
        ]
        acts.append(ActionSpec("more", msg("act_more", lang, n=MORE_COUNT)))
        if not self.overrides.get("fast"):
            acts.append(ActionSpec("quick", msg("act_quick", lang, n=MORE_COUNT)))
        acts += [
            ActionSpec("variations", msg("act_variations", lang)),
            ActionSpec("tweak", msg("act_tweak", lang)),
        ]
        if self.last and upscale_size(self.last[0][0].image.width, self.last[0][0].image.height):
            acts.append(ActionSpec("upscale", msg("act_upscale", lang)))
        acts.append(ActionSpec("new", msg("act_new", lang)))
        return acts

    # --- buttons -----------------------------------------------------------------------

    async def on_action(self, name: str, payload: Mapping[str, Any], ui: StudioUI) -> None:
        if name == "new":
            self.reset()
            await ui.say(msg("new_picture", self.lang))
            return
        if self.spec is None:
            await ui.say(msg("nothing_yet", self.lang))
            return
        if name == "more":
            request = self.spec.to_image_request(
                {**self.overrides, "seed": None, "batch_size": MORE_COUNT}
            )  # new seeds by definition, whatever the lock says
            await self._run(request, ui)
        elif name == "quick":  # fast mode: few steps, no CFG, tiny VAE; new seeds
            request = self.spec.to_image_request(
                {**self.overrides, "seed": None, "batch_size": MORE_COUNT, "fast": True}
            )
            await self._run(request, ui)
        elif name == "full":  # the chosen preview's seed at the panel's full settings
            overrides = {**self.overrides, "fast": False, "batch_size": 1}
            await self._run(self.spec.to_image_request(
                {**overrides, "seed": int(payload.get("seed", 0))}), ui)
        elif name == "variations":
            self.variants = await self.builder.variations(self.spec, VARIATION_COUNT)
            lines = [
                f"**#{i + 1} {v.label or v.axis}** ({v.axis}) — `{v.positive}`"
                for i, v in enumerate(self.variants)
            ]
            text = msg("variations_intro", self.lang, n=len(lines)) + "\n\n" + "\n\n".join(lines)
            picks = [
                ActionSpec("pick", msg("act_pick", self.lang, n=i + 1), {"index": i})
                for i in range(len(self.variants))
            ]
            await ui.show(text, picks)
        elif name == "pick":
            index = int(payload.get("index", -1))
            if not 0 <= index < len(self.variants):
                await ui.say(msg("nothing_yet", self.lang))
                return
            self.spec = self.variants[index]
            seed = self.last[0][0].seed if self.last else None
            await self.draw(self.spec, ui, {"seed": seed} if seed is not None else None)
        elif name == "tweak":
            self.awaiting_tweak = True
            shown = self.last[0][0].seed if self.last else "—"
            await ui.say(msg("tweak_prompt", self.lang, seed=shown))
        elif name == "upscale":
            await self._upscale(ui)
        else:
            raise InvalidRequest(f"Unknown action {name!r}.", f"不明な操作です: {name!r}")

    async def _upscale(self, ui: StudioUI) -> None:
        """img2img from the last image at up to 2× size, same seed, light denoise."""
        gen, path = self.last[0]
        size = upscale_size(gen.image.width, gen.image.height)
        if size is None:
            await ui.say(
                msg("too_big_upscale", self.lang, width=gen.image.width, height=gen.image.height)
            )
            return
        request = gen.request.model_copy(
            update={
                "width": size[0],
                "height": size[1],
                "init_image": path,
                "strength": 0.35,
                "batch_size": 1,
                "seed": gen.seed,
            }
        )
        await self._run(ImageRequest.model_validate(request.model_dump()), ui)
