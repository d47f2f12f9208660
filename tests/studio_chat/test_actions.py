"""Buttons are typed actions: a name and a payload model, routed by a table."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from assistant.studio.actions import (
    ActionKind,
    ActionSpec,
    ActionTable,
    IndexPayload,
    NoPayload,
    RecordPayload,
)
from tools.core.errors import InvalidRequest

PICK = ActionKind("pick", IndexPayload)
MORE = ActionKind("more", NoPayload)


async def test_the_table_hands_each_handler_its_typed_payload() -> None:
    got: list[Any] = []

    async def pick(payload: IndexPayload, ui: Any) -> None:
        got.append((payload, ui))

    table = ActionTable()
    table.add(PICK, pick)
    await table.dispatch("pick", {"index": "2"}, "ui")
    assert got == [(IndexPayload(index=2), "ui")]
    assert PICK.button("Pick #3", IndexPayload(index=2)) == ActionSpec("pick", "Pick #3",
                                                                        {"index": 2})
    assert MORE.button("More") == ActionSpec("more", "More", {})


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("pick", {}, "index: Field required"),
        ("pick", {"index": 1, "extra": True}, "extra: Extra inputs are not permitted"),
        ("explode", {}, "Unknown action 'explode'"),
    ],
)
async def test_bad_presses_are_refused_with_a_message(
    name: str, payload: dict[str, Any], message: str
) -> None:
    table = ActionTable()
    table.add(PICK, lambda p, ui: asyncio.sleep(0))
    with pytest.raises(InvalidRequest, match=message):
        await table.dispatch(name, payload, None)


def test_merged_tables_route_every_name_once() -> None:
    a, b = ActionTable(), ActionTable()
    a.add(PICK, lambda p, ui: asyncio.sleep(0))
    b.add(ActionKind("ledger_favourite", RecordPayload), lambda p, ui: asyncio.sleep(0))
    assert ActionTable.merged(a, b).names == {"pick", "ledger_favourite"}
    with pytest.raises(ValueError, match="already routed"):
        ActionTable.merged(a, a)
