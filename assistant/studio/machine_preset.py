"""The machine's preset in the chat that measured it (issue #15).

After the first picture on a CPU the engine times one UNet step and Quick / Balanced /
Full is chosen for this machine (:mod:`tools.engines.diffusers.fastmodels.machine`).
Chats opened later start on it; a chat already open takes it too, once, for its next
picture, as long as its panel still says "auto": :class:`PresetFollower` keeps, per chat,
whether the preset is still the machine's to choose, and :meth:`PresetFollower.switch`
gives the panel's new values and the note that says why ("This computer makes a
full-quality picture in about 40 s…"). A preset the person picked is never overridden.
"""

from __future__ import annotations

from typing import Any, Literal

from tools.engines.diffusers.fastmodels.machine import Choice, explain

Source = Literal["auto", "machine", "person"]
AUTO = "auto"


class PresetFollower:
    """Who set one chat's preset: nobody yet (``auto``: the machine's measurement may),
    the machine, or the person in the panel."""

    def __init__(self, shown: str = AUTO) -> None:
        self.shown = shown or AUTO  # the preset the panel was last sent with
        self.source: Source = "auto" if self.shown == AUTO else "machine"

    def submitted(self, values: dict[str, Any]) -> None:
        """The panel was submitted: a preset other than the one shown is the person's."""
        preset = str(values.get("preset", self.shown) or AUTO)
        if preset != self.shown:
            self.source, self.shown = "person", preset

    def switch(self, choice: Choice | None, values: dict[str, Any],
               lang: str) -> tuple[dict[str, Any], str] | None:
        """The panel's ``values`` with the machine's preset, and why in ``lang``, when
        this chat is still on "auto" and the machine has been measured; once (None
        otherwise, and for ever after)."""
        if choice is None or self.source != "auto":
            return None
        self.source, self.shown = "machine", choice.preset
        return {**values, "preset": choice.preset}, explain(choice, lang)
