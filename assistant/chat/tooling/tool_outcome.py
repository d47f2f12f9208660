"""What the tools really did in a free-chat turn, shown beside what the model says.

A small model whose ``generate_image`` arguments the tool rejected (a size that is no
multiple of 8, an unknown sampler) often ends the turn with "I generated the image" anyway.
So every tool run is shown as a tool step with its outcome while the turn runs, and a turn
in which the image tool was asked but drew nothing ends with Egaki's own note saying so: no
image, no claim of one standing alone.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from assistant.chat.tooling.agent import AgentTurn
from assistant.chat.tooling.image_tool import TOOL_NAME, drew
from tools.core.messages import msg


class ToolStepUI(Protocol):
    async def end_stream(self) -> None: ...
    async def tool_step(self, name: str, arguments: str, outcome: str, ok: bool) -> None: ...
    async def say(self, text: str) -> None: ...


def _ok(name: str, result: str) -> bool:
    if name == TOOL_NAME:
        return drew(result)
    return not result.startswith(("Error:", "Unknown tool"))


class ToolReporter:
    """``on_tool`` for :meth:`ChatAgent.respond`, then :meth:`close` after the turn."""

    def __init__(self, ui: ToolStepUI, lang: str) -> None:
        self.ui, self.lang = ui, lang

    async def on_tool(self, call: dict[str, Any], result: str) -> None:
        """One tool run as a step, between the text before it and the text after it."""
        name = str(call.get("name", ""))
        await self.ui.end_stream()
        args = json.dumps(call.get("args", {}), ensure_ascii=False, indent=1)
        await self.ui.tool_step(name, args, result, _ok(name, result))

    async def close(self, turn: AgentTurn) -> None:
        """Egaki's note when the image tool was called and drew nothing this turn."""
        results = [str(m.content) for m in turn.messages
                   if getattr(m, "type", "") == "tool" and getattr(m, "name", "") == TOOL_NAME]
        if results and not any(drew(r) for r in results):
            reason = results[-1].split("\n")[0][:300]
            await self.ui.say(msg("image_tool_refused", self.lang, reason=reason))
