"""Ledger commands in the chat: find, show, reproduce, new seed, rate, favourite, export.

:func:`assistant.chat.ledger_commands.parse_ledger_command` decides whether a message is a
command; :class:`LedgerChat` carries it out against the shared :class:`tools.ledger.service.Ledger`
and shows the outcome through the same UI protocol as the studio (``say``, ``show``,
``show_images``). Ledger I/O runs in a worker thread so the chat never stalls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from assistant.chat.ledger_commands import (
    AgainNewSeed,
    Export,
    Favourite,
    FindImages,
    LedgerCommand,
    Rate,
    Reproduce,
    Show,
)
from assistant.chat.state import ChatState
from assistant.studio.actions import ActionKind, ActionSpec, ActionTable, RecordPayload
from assistant.studio.runner import ImageRunner
from tools.core.messages import msg
from tools.ledger.service import Ledger
from tools.ledger.types import LedgerRecord

SEARCH_RESULTS = 6
# The buttons under a record (see assistant.studio.actions).
REPRODUCE = ActionKind("ledger_reproduce", RecordPayload)
NEW_SEED = ActionKind("ledger_new_seed", RecordPayload)
FAVOURITE = ActionKind("ledger_favourite", RecordPayload)


class LedgerUI(Protocol):
    async def say(self, text: str) -> None: ...
    async def show(self, text: str, actions: list[ActionSpec]) -> None: ...
    async def show_images(self, text: str, images: list[Path], actions: list[ActionSpec]) -> None:
        ...


def describe(record: LedgerRecord, lang: str) -> str:
    """One line per record: id, seed, size, sampler, prompt head, stars."""
    req = record.request
    head = req.prompt if len(req.prompt) <= 80 else req.prompt[:77] + "…"
    return msg(
        "ledger_line", lang, tag=record.tag, seed=record.seed, width=record.width,
        height=record.height, sampler=req.sampler, steps=req.steps,
        stars="★" * (record.rating or 0), fav=" ♥" if record.favourite else "", prompt=head,
    )


class LedgerChat:
    """Carries out the ledger commands and buttons of one chat (language from its state)."""

    def __init__(self, ledger: Ledger, runner: ImageRunner, state: ChatState | None = None
                 ) -> None:  # fmt: skip
        self.ledger = ledger
        self.runner = runner
        self.state = state if state is not None else ChatState()
        self._commands: dict[type[Any], Callable[[Any, LedgerUI], Awaitable[None]]] = {
            FindImages: self._find,
            Show: self._show,
            Reproduce: self._reproduce,
            AgainNewSeed: self._reproduce,
            Rate: self._rate,
            Favourite: self._favourite,
            Export: self._export,
        }
        self.table = ActionTable()
        self.table.add(REPRODUCE, self._button(lambda p: Reproduce(p.id)))
        self.table.add(NEW_SEED, self._button(lambda p: AgainNewSeed(p.id)))
        self.table.add(FAVOURITE, self._button(lambda p: Favourite(p.id, True)))

    @property
    def lang(self) -> str:
        return self.state.lang

    async def handle(self, cmd: LedgerCommand, ui: LedgerUI) -> None:
        """Run ``cmd``; EgakiErrors (unknown id, bad rating…) propagate to the caller."""
        await self._commands[type(cmd)](cmd, ui)

    async def on_action(self, name: str, payload: dict[str, Any], ui: LedgerUI) -> None:
        """A press of a record's button (:attr:`table` checks and routes it)."""
        await self.table.dispatch(name, payload, ui)

    def _button(self, command: Callable[[RecordPayload], LedgerCommand]
                ) -> Callable[[RecordPayload, LedgerUI], Awaitable[None]]:  # fmt: skip
        async def press(payload: RecordPayload, ui: LedgerUI) -> None:
            await self.handle(command(payload), ui)

        return press

    async def _show(self, cmd: Show, ui: LedgerUI) -> None:
        record = await asyncio.to_thread(self.ledger.get, cmd.id)
        paths = [] if record.missing else [record.path]
        await ui.show_images(describe(record, self.lang), paths, self.actions(record, self.lang))

    async def _reproduce(self, cmd: Reproduce | AgainNewSeed, ui: LedgerUI) -> None:
        make = (self.ledger.reproduce_request if isinstance(cmd, Reproduce)
                else self.ledger.again_new_seed)
        request = await asyncio.to_thread(make, cmd.id)
        context = await asyncio.to_thread(self.ledger.lineage, cmd.id)
        await self.runner.run(request, context=context)

    async def _rate(self, cmd: Rate, ui: LedgerUI) -> None:
        await asyncio.to_thread(self.ledger.rate, cmd.id, cmd.stars)
        stars = "★" * cmd.stars or msg("ledger_no_rating", self.lang)
        await ui.say(f"#{cmd.id.lstrip('#')} → {stars}")

    async def _favourite(self, cmd: Favourite, ui: LedgerUI) -> None:
        await asyncio.to_thread(self.ledger.favourite, cmd.id, cmd.on)
        mark = "♥" if cmd.on else "♡"
        await ui.say(f"#{cmd.id.lstrip('#')} {mark}")

    async def _export(self, cmd: Export, ui: LedgerUI) -> None:
        ids = list(cmd.ids) or None
        text = await asyncio.to_thread(self.ledger.export_many, ids, cmd.fmt)
        await ui.say(f"```{'json' if cmd.fmt == 'json' else 'text'}\n{text}\n```")

    async def _find(self, cmd: FindImages, ui: LedgerUI) -> None:
        lang = self.lang
        result = await asyncio.to_thread(self.ledger.search, cmd.query, SEARCH_RESULTS)
        note = result.note.localized(lang) if result.note is not None else ""
        if not result.hits:
            await ui.say(f"{msg('ledger_nothing_found', lang)} {note}".strip())
            return
        lines = [describe(hit.record, lang) for hit in result.hits]
        if note:
            lines.append(f"_{note}_")
        paths = [h.record.path for h in result.hits if not h.record.missing]
        actions = [a for h in result.hits[:3] for a in self.actions(h.record, lang)[:1]]
        await ui.show_images("\n\n".join(lines), paths, actions)

    @staticmethod
    def actions(record: LedgerRecord, lang: str) -> list[ActionSpec]:
        ids = RecordPayload(id=record.id)
        return [
            REPRODUCE.button(msg("act_reproduce", lang, tag=record.tag), ids),
            NEW_SEED.button(msg("act_new_seed", lang, tag=record.tag), ids),
            FAVOURITE.button(f"♥ {record.tag}", ids),
        ]
