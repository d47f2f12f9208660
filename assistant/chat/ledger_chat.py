"""Ledger commands in the chat: find, show, reproduce, new seed, rate, favourite, export.

:func:`assistant.chat.ledger_commands.parse_ledger_command` decides whether a message is a
command; :class:`LedgerChat` carries it out against the shared :class:`tools.ledger.service.Ledger`
and shows the outcome through the same UI protocol as the studio (``say``, ``show``,
``show_images``). Ledger I/O runs in a worker thread so the chat never stalls.
"""

from __future__ import annotations

import asyncio
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
from assistant.studio.flow import ActionSpec
from assistant.studio.runner import ImageRunner
from tools.core.messages import msg
from tools.ledger.service import Ledger
from tools.ledger.types import LedgerRecord

SEARCH_RESULTS = 6


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
    """Carries out one parsed command for one chat."""

    def __init__(self, ledger: Ledger, runner: ImageRunner) -> None:
        self.ledger = ledger
        self.runner = runner

    async def handle(self, cmd: LedgerCommand, ui: LedgerUI, lang: str) -> None:
        """Run ``cmd``; EgakiErrors (unknown id, bad rating…) propagate to the caller."""
        if isinstance(cmd, FindImages):
            await self._find(cmd.query, ui, lang)
        elif isinstance(cmd, Show):
            record = await asyncio.to_thread(self.ledger.get, cmd.id)
            paths = [] if record.missing else [record.path]
            await ui.show_images(describe(record, lang), paths, self.actions(record, lang))
        elif isinstance(cmd, Reproduce | AgainNewSeed):
            make = (self.ledger.reproduce_request if isinstance(cmd, Reproduce)
                    else self.ledger.again_new_seed)
            request = await asyncio.to_thread(make, cmd.id)
            context = await asyncio.to_thread(self.ledger.lineage, cmd.id)
            await self.runner.run(request, context=context)
        elif isinstance(cmd, Rate):
            await asyncio.to_thread(self.ledger.rate, cmd.id, cmd.stars)
            stars = "★" * cmd.stars or msg("ledger_no_rating", lang)
            await ui.say(f"#{cmd.id.lstrip('#')} → {stars}")
        elif isinstance(cmd, Favourite):
            await asyncio.to_thread(self.ledger.favourite, cmd.id, cmd.on)
            mark = "♥" if cmd.on else "♡"
            await ui.say(f"#{cmd.id.lstrip('#')} {mark}")
        elif isinstance(cmd, Export):
            ids = list(cmd.ids) or None
            text = await asyncio.to_thread(self.ledger.export_many, ids, cmd.fmt)
            await ui.say(f"```{'json' if cmd.fmt == 'json' else 'text'}\n{text}\n```")

    async def _find(self, query: str, ui: LedgerUI, lang: str) -> None:
        result = await asyncio.to_thread(self.ledger.search, query, SEARCH_RESULTS)
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
        return [
            ActionSpec("ledger_reproduce", msg("act_reproduce", lang, tag=record.tag),
                       {"id": record.id}),
            ActionSpec("ledger_new_seed", msg("act_new_seed", lang, tag=record.tag),
                       {"id": record.id}),
            ActionSpec("ledger_favourite", f"♥ {record.tag}", {"id": record.id}),
        ]

    async def on_action(self, name: str, payload: dict[str, Any], ui: LedgerUI,
                        lang: str) -> None:
        record_id = str(payload.get("id", ""))
        commands: dict[str, LedgerCommand] = {
            "ledger_reproduce": Reproduce(record_id),
            "ledger_new_seed": AgainNewSeed(record_id),
            "ledger_favourite": Favourite(record_id, True),
        }
        cmd = commands[name]
        await self.handle(cmd, ui, lang)

    @staticmethod
    def handles(name: str) -> bool:
        return name.startswith("ledger_")
