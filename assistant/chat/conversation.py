"""One chat's turn handling, independent of Chainlit.

The UI layer implements :class:`ChatUI` (send text, stream tokens, ask yes/no, show
progress) and forwards events here. Keeping this free of Chainlit lets tests drive a
whole conversation with a fake UI and a fake (or wire-faked) model.

What the chat remembers lives in one :class:`~assistant.chat.state.ChatState`, shared by
reference with the studio, the vision flow and the ledger commands; the conversation
routes each message, upload and button press to the flow it belongs to:

1. a typed ``x,y,w,h`` box while an inpaint waits for its mask → the vision flow;
2. a ledger command ("find images like…", "reproduce #id") → the ledger commands;
3. "change the hat on the left to a red beret" once there is a picture → masks from
   words (:mod:`assistant.chat.mask_words`);
4. the interview or a tweak in progress → the studio;
5. anything else → the free chat agent (which may call ``generate_image``).

Buttons go through one :class:`~assistant.studio.actions.ActionTable` merged from the
three flows' tables.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.tools import BaseTool

from assistant.chat.chat_ui import ChatUI, pick_title
from assistant.chat.control_flow import ControlFlow, english_prompt_writer
from assistant.chat.ledger_chat import LedgerChat
from assistant.chat.ledger_commands import parse_ledger_command
from assistant.chat.mask_words import MaskWordsFlow
from assistant.chat.state import HISTORY_KEPT, ChatState, Turn
from assistant.chat.tooling.agent import AgentTurn, ChatAgent
from assistant.chat.tooling.image_tool import attach_controls
from assistant.chat.tooling.tool_mode import ToolSupport, text_tool_prompt
from assistant.chat.tooling.tool_outcome import ToolReporter
from assistant.chat.vision_flow import VisionFlow
from assistant.studio.actions import ActionTable
from assistant.studio.best_of import BestOf
from assistant.studio.flow import Runner, Studio, TokenCounter
from assistant.studio.panel import PanelChoice, read_panel
from prompts.loader import render
from tools.core.errors import (
    EgakiError,
    GenerationCancelled,
    ModelMissing,
    OllamaUnavailable,
    ToolsRefused,
)
from tools.core.messages import language_name, message_language, msg
from tools.core.settings import Settings
from tools.llm.backend import STREAM_ERRORS, LLMGateway
from tools.llm.chat_models import ModelFactory
from tools.llm.ollama_gateway import (
    CONNECTION_ERRORS,
    ModelStatus,
    PullProgress,
    unavailable,
)
from vision.caption import OllamaCaptioner
from vision.grounding.factory import make_segmenter
from vision.grounding.regions import Segmenter
from vision.uploads import load_upload

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 20_000


class Conversation:
    """A single chat: routes its messages, uploads and buttons; knows if the model is ready."""

    def __init__(
        self,
        settings: Settings,
        gateway: LLMGateway,
        model_factory: ModelFactory,
        tools: Sequence[BaseTool] = (),
        state: ChatState | None = None,
        *,
        runner: Runner | None = None,
        family: str = "sd15",
        ledger_chat: LedgerChat | None = None,
        best_of_factory: Callable[[BaseChatModel], BestOf] | None = None,
        best_of_default: bool = False,
        token_counter: TokenCounter | None = None,
        tool_support: ToolSupport | None = None,
        segmenter: Callable[[], Segmenter] | None = None,
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.model_factory = model_factory
        self.tools = list(tools)
        self.state = state if state is not None else ChatState()
        self.history: list[BaseMessage] = []  # with tool calls; texts are saved in the state
        self.status: ModelStatus | None = None
        self._agent: ChatAgent | None = None
        self._told_no_tools = False
        # app-wide: a model that refused tools writes its calls as JSON text (tool_mode.py)
        self.tool_support, self._native_tools = tool_support or ToolSupport(), True
        self.runner = runner
        self.family = family
        self.studio: Studio | None = None
        self.panel: PanelChoice | None = None
        self.vision: VisionFlow | None = None
        self.control: ControlFlow | None = None
        self.ledger_chat = ledger_chat
        self.best_of_factory = best_of_factory
        self.best_of_default = best_of_default
        self.token_counter = token_counter
        self.table = ActionTable()  # every flow's buttons, once the flows exist
        self.segmenter = segmenter or functools.cache(lambda: make_segmenter(self.settings))
        self.mask_words: MaskWordsFlow | None = None

    @property
    def lang(self) -> str:
        return self.state.lang

    @property
    def ready(self) -> bool:
        return self._agent is not None

    async def start(self, ui: ChatUI) -> None:
        """Greet, then check the chat model (offering a pull if it's missing)."""
        await ui.say(msg("welcome", self.lang))
        await self.ensure_model(ui)

    def title(self, words: str) -> str:
        """A name for this chat after a successful turn: the person's own ``words`` when
        they say something ("GO" says little), else the latest picture's caption, the
        prompt's words or its subject; "" when there is nothing worth a name yet."""
        spec = self.state.studio.spec
        captions = [d.summary for d in self.vision.descriptions.values()] if self.vision else []
        candidates = [words, *captions[-1:]]
        if spec is not None:
            candidates += [" ".join(spec.user_words), spec.parts.subject]
        return pick_title(candidates)

    async def ensure_model(self, ui: ChatUI) -> bool:
        """Make the chat model usable; tell the user what to do when it isn't."""
        model = self.settings.chat_model
        try:
            try:
                self.status = await self.gateway.status(model)
            except ModelMissing:
                if not (self.settings.auto_pull or await ui.confirm_pull(model, self.lang)):
                    await ui.say(msg("model_missing_hint", self.lang, model=model))
                    return False

                async def report(p: PullProgress) -> None:
                    await ui.pull_progress(model, p, self.lang)

                await self.gateway.pull(model, report)
                await ui.say(msg("pull_done", self.lang, model=model))
                self.status = await self.gateway.status(model)
        except EgakiError as err:
            self._agent = None
            await ui.say(err.localized(self.lang))
            return False
        self._native_tools = self.tool_support.native(model, self.status.tools)
        if self.tools and not self._native_tools and not self._told_no_tools:
            self._told_no_tools = True
            await ui.say(msg("no_tools", self.lang, model=model))
        chat_model = self.model_factory(model)
        self._agent = ChatAgent(chat_model, self.tools, self._system_prompt(),
                                native_tools=self._native_tools)
        if self.runner is not None and self.studio is None:
            self._build_flows(chat_model, self.runner)
        return True

    def _build_flows(self, chat_model: BaseChatModel, runner: Runner) -> None:
        """The studio and the vision flow on this chat's state, and one table for buttons."""
        best_of = self.best_of_factory(chat_model) if self.best_of_factory else None
        self.studio = Studio(
            chat_model, runner, state=self.state, family=self.family,
            best_of=best_of, best_of_default=self.best_of_default,
            token_counter=self.token_counter, upscalers_dir=self.settings.upscalers_dir,
        )
        if self.panel is not None:
            self.studio.apply_panel(self.panel)
        self.vision = VisionFlow(
            OllamaCaptioner.from_settings(self.settings, gateway=self.gateway),
            runner,
            self.settings,
            state=self.state,
            family=self.family,
            overrides=self.panel.overrides if self.panel else None,
            presets=self.panel.presets if self.panel else None,
        )
        self.control = ControlFlow(
            runner, self.settings, lang=lambda: self.lang, family=self.family,
            panel=self.vision, write_prompt=english_prompt_writer(chat_model),
            current_prompt=lambda: self.studio.spec.positive if self.studio and self.studio.spec
            else None,
        )
        for tool in self.tools:
            attach_controls(tool, self.control.units)
        self.mask_words = MaskWordsFlow(self.vision, self.segmenter, chat_model)
        flows = [self.ledger_chat, self.vision, self.mask_words, self.control, self.studio]
        self.table = ActionTable.merged(*(f.table for f in flows if f is not None))

    def _system_prompt(self) -> str:
        text = render("system.md", language=language_name(self.lang))
        spec = self.studio.spec if self.studio else None
        if spec is not None:
            seeds = [shown.seed for shown in self.studio.last] if self.studio else []
            text += (
                "\nThe current picture (edit it with generate_image when asked):\n"
                f"- prompt: {spec.positive}\n- negative: {spec.negative}\n"
                f"- size: {spec.settings.width}x{spec.settings.height}, steps "
                f"{spec.settings.steps}, CFG {spec.settings.cfg_scale}, sampler "
                f"{spec.settings.sampler}, last seeds: {seeds}\n"
            )
        if self.tools and not self._native_tools:
            text += text_tool_prompt(self.tools)
        return text

    async def on_message(self, text: str, ui: ChatUI) -> None:
        """Handle one user message end to end; never raises for expected failures."""
        text = (text or "").strip()
        if not text:
            await ui.say(msg("empty_message", self.lang))
            return
        if len(text) > MAX_MESSAGE_CHARS:
            await ui.say(msg("too_long", self.lang, size=len(text), limit=MAX_MESSAGE_CHARS))
            return
        lang = message_language(text, self.lang)  # errors of this turn speak it too
        if lang != self.lang:
            self.state.lang = lang
            self._agent = None  # rebuild with the system prompt in the new language
        if not self.ready and not await self.ensure_model(ui):
            return
        assert self._agent is not None
        if self.vision is not None and self.vision.wants_message(text):
            await self._guarded(self.vision.on_message(text, ui), ui)
            return
        if self.control is not None and self.control.wants_message:  # what to draw, now
            self.state.user_words = text
            await self._guarded(self.control.on_message(text, ui), ui)
            return
        self.state.user_words = text  # stored with the images this message leads to
        command = parse_ledger_command(text) if self.ledger_chat is not None else None
        if self.ledger_chat is not None and command is not None:
            await self._guarded(self.ledger_chat.handle(command, ui), ui)
            return
        if self.mask_words is not None and self.mask_words.wants_message(text):
            await self._guarded(self.mask_words.on_message(text, ui), ui)  # "change the hat…"
            self.history.append(HumanMessage(text))
            return
        if self.studio is not None and self.studio.wants_message:
            await self._guarded(self.studio.on_message(text, ui), ui)
            self.history.append(HumanMessage(text))
            return
        if self.studio is not None and self.studio.spec is not None:
            self._agent.system_prompt = self._system_prompt()
        user = HumanMessage(text)
        try:
            turn = await self._respond([*self.history, user], ui)
        except STREAM_ERRORS as err:
            await ui.end_stream()
            self._agent = None  # re-check on the next message: recovers when Ollama is back
            log.info("Ollama failed during a turn: %r", err)
            down = await self._still_up()
            await ui.say(
                msg("stream_broken", self.lang, error=type(err).__name__)
                if down is None
                else down.localized(self.lang)
            )
            return
        await ui.end_stream()
        self.history.append(user)
        self.history.extend(turn.messages)

    async def _respond(self, history: list[BaseMessage], ui: ChatUI) -> AgentTurn:
        """The agent's turn; a refusal of tools: text tool calls, and the turn again."""
        assert self._agent is not None
        tools = ToolReporter(ui, self.lang)  # each tool run as a step; no image, no claim
        try:
            turn = await self._agent.respond(history, ui.stream_token, tools.on_tool)
        except ToolsRefused as err:
            self.tool_support.refused(self.settings.chat_model)  # logged by tool_support
            self._told_no_tools, self._agent = True, None
            await ui.say(err.localized(self.lang))
            if not await self.ensure_model(ui) or self._agent is None:
                return AgentTurn()
            turn = await self._agent.respond(history, ui.stream_token, tools.on_tool)
        await ui.end_stream()
        await tools.close(turn)
        return turn

    def snapshot(self) -> dict[str, object]:
        """The chat state, with the latest text turns, as JSON-safe data for thread resume."""
        turns = [
            Turn(role=m.type, content=m.content)
            for m in self.history
            if m.type in ("human", "ai") and isinstance(m.content, str) and m.content
        ]
        self.state.history = turns[-HISTORY_KEPT:]
        return self.state.snapshot()

    def restore(self, data: dict[str, Any]) -> None:
        """Undo :meth:`snapshot`: the shared state is loaded in place, the history rebuilt."""
        self.state.restore(data)
        self.history = [
            HumanMessage(t.content) if t.role == "human" else AIMessage(t.content)
            for t in self.state.history
        ]

    async def apply_panel(self, values: dict[str, object], ui: ChatUI) -> None:
        """Settings panel submitted: new overrides now, a new chat model re-checked now."""
        choice = read_panel(values, self.family)
        self.panel = choice
        if self.studio is not None:
            self.studio.apply_panel(choice)
        if self.vision is not None:
            self.vision.overrides = dict(choice.overrides)
            self.vision.presets = choice.presets
        if choice.chat_model and choice.chat_model != self.settings.chat_model:
            self.settings = self.settings.model_copy(update={"chat_model": choice.chat_model})
            self._agent, self.studio = None, None
            await self.ensure_model(ui)

    async def on_action(self, name: str, payload: dict[str, object], ui: ChatUI) -> None:
        """A button press from the studio's, the vision flow's or the ledger's cards."""
        if self.studio is None and (not await self.ensure_model(ui) or self.studio is None):
            return
        await self._guarded(self.table.dispatch(name, payload, ui), ui)

    async def on_upload(
        self, files: list[tuple[Path, str, str]], ui: ChatUI, instruction: str = ""
    ) -> None:
        """Images dropped into the chat: (path, original name, declared mime) each.

        Right after "Inpaint a region", the first image is taken as the mask instead."""
        if self.vision is None and (not await self.ensure_model(ui) or self.vision is None):
            return
        vision = self.vision
        if vision.awaiting_mask and files:  # an uploaded black-and-white mask
            path, name, mime = files[0]
            await self._guarded(vision.on_mask_upload(path, name, mime, instruction, ui), ui)
            return
        for path, name, mime in files:

            async def handle(path: Path = path, name: str = name, mime: str = mime) -> None:
                upload = await asyncio.to_thread(
                    load_upload, path, self.settings, name=name, mime=mime
                )
                await vision.on_upload(upload, ui)
                if self.control is not None:  # "keep this pose / these outlines…"
                    await self.control.offer(upload, ui)

            await self._guarded(handle(), ui)

    async def _guarded(self, work: Awaitable[object], ui: ChatUI) -> None:
        """Run studio work; expected failures become messages, the chat stays usable."""
        try:
            await work
        except GenerationCancelled:
            await ui.say(msg("cancelled", self.lang))
        except CONNECTION_ERRORS as err:
            self._agent = None
            down = await self._still_up()
            await ui.say(
                msg("stream_broken", self.lang, error=type(err).__name__)
                if down is None
                else down.localized(self.lang)
            )
        except EgakiError as err:
            await ui.say(err.localized(self.lang))

    async def _still_up(self) -> OllamaUnavailable | None:
        """None when Ollama answers (the stream broke), else the 'unreachable' error."""
        try:
            await self.gateway.installed()
        except OllamaUnavailable as err:
            return err
        except Exception:  # pragma: no cover - any other answer means it's up
            return None
        return None


__all__ = ["ChatUI", "Conversation", "unavailable"]

