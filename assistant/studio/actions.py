"""Buttons as typed actions: a name, a payload model, and a table that routes them.

A flow declares each kind of button once, as an :class:`ActionKind` (its wire name and
the pydantic model of its payload), and registers a handler for it in its
:class:`ActionTable`. A press arrives from the UI edge as a name and a plain dict; the
table checks the payload against the model and calls the handler with the typed
payload, so no handler parses dicts and no flow routes with an if-chain::

    MORE = ActionKind("more", NoPayload)
    PICK = ActionKind("pick", IndexPayload)

    table = ActionTable()
    table.add(PICK, studio.pick)             # async def pick(p: IndexPayload, ui) -> None
    button = PICK.button("Pick #1", IndexPayload(index=0))  # an ActionSpec for the UI
    await table.dispatch("pick", {"index": 0}, ui)

Tables merge with :meth:`ActionTable.merged`, which is how a chat routes every button
of its studio, vision and ledger flows through one callback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tools.core.errors import InvalidRequest
from tools.core.request import format_validation_error


@dataclass(frozen=True)
class ActionSpec:
    """A button as the UI shows it: ``name`` routes it back, ``payload`` rides along."""

    name: str
    label: str
    payload: dict[str, Any] = field(default_factory=dict)


class Payload(BaseModel):
    """What a button carries back; subclasses name their fields. Unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoPayload(Payload):
    """A button that carries nothing."""


class SeedPayload(Payload):
    seed: int = Field(ge=0)


class IndexPayload(Payload):
    index: int


class ImagePayload(Payload):
    """An uploaded or generated image, by its upload id."""

    image_id: str = Field(min_length=1)


class MaskPayload(ImagePayload):
    """The mask painter's answer: a PNG data URL, and what to paint there."""

    mask: str = Field(min_length=1)
    instruction: str = ""


class RecordPayload(Payload):
    """A ledger record, by its id."""

    id: str = Field(min_length=1)


P = TypeVar("P", bound=Payload)


@dataclass(frozen=True)
class ActionKind(Generic[P]):
    """One kind of button: its wire ``name`` and the model of its payload."""

    name: str
    payload: type[P]

    def button(self, label: str, payload: P | None = None) -> ActionSpec:
        """The :class:`ActionSpec` the UI shows for this kind."""
        return ActionSpec(self.name, label, payload.model_dump() if payload else {})

    def parse(self, raw: Mapping[str, Any]) -> P:
        """The typed payload of a press, or :class:`InvalidRequest` saying what is wrong."""
        try:
            return self.payload.model_validate(dict(raw))
        except ValidationError as err:
            detail = format_validation_error(err)
            raise InvalidRequest.of("bad_button_payload", name=self.name, detail=detail) from err


Handler = Callable[[Any, Any], Awaitable[object]]  # (typed payload, ui)


class ActionTable:
    """Routes a pressed button's name to the handler registered for its kind."""

    def __init__(self) -> None:
        self._routes: dict[str, tuple[ActionKind[Any], Handler]] = {}

    def add(self, kind: ActionKind[P], handler: Callable[[P, Any], Awaitable[object]]) -> None:
        """Send presses of ``kind`` to ``handler(payload, ui)``; a name is routed once."""
        if kind.name in self._routes:
            raise ValueError(f"action {kind.name!r} is already routed")
        self._routes[kind.name] = (kind, handler)

    @classmethod
    def merged(cls, *tables: ActionTable) -> ActionTable:
        """One table with every route of ``tables`` (names must not clash)."""
        out = cls()
        for table in tables:
            for kind, handler in table._routes.values():
                out.add(kind, handler)
        return out

    def handles(self, name: str) -> bool:
        return name in self._routes

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._routes)

    async def dispatch(self, name: str, raw: Mapping[str, Any], ui: Any) -> None:
        """Check ``raw`` against the kind's payload model and run its handler."""
        route = self._routes.get(name)
        if route is None:
            raise InvalidRequest.of("unknown_action", name=name)
        kind, handler = route
        await handler(kind.parse(raw), ui)
