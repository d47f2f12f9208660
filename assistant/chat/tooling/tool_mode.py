"""Tool calls for models that cannot make them natively: written as JSON text instead.

Ollama answers HTTP 400 "… does not support tools" when ``tools`` are sent to a model
whose template has none (gemma3, SmolLM2, many small models); other servers silently drop
them. Such a model still reaches the image: the agent gets the tools *unbound*, the system
prompt gets :func:`text_tool_prompt` (the call written as one JSON object), and the agent
runs a call written that way (:mod:`assistant.chat.tooling.text_tool_calls`).

What is known about a model is kept in one :class:`ToolSupport` per app, so a model that
refused tools once is not offered them again in any chat (detected once, remembered).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from langchain_core.tools import BaseTool

from prompts.loader import render

log = logging.getLogger(__name__)


class ToolSupport:
    """Per model: may it be sent ``tools``? The server's word until a refusal says no."""

    def __init__(self) -> None:
        self._refused: set[str] = set()

    def native(self, model: str, server_says: bool) -> bool:
        """True when ``model`` gets real tools: the server says so and never refused."""
        return server_says and model not in self._refused

    def refused(self, model: str) -> None:
        """The server refused tools for ``model``: text tool calls from now on."""
        log.info("%s refused tools; text tool calls from now on", model)
        self._refused.add(model)


def _type_of(prop: dict[str, object]) -> str:
    """'string', 'integer'… of a JSON-schema property (an optional one: its non-null type)."""
    branches = prop.get("anyOf")
    options = [prop, *(branches if isinstance(branches, list) else [])]
    found = [str(b.get("type")) for b in options if isinstance(b, dict) and b.get("type")]
    return next((t for t in found if t != "null"), "any")


def text_tool_prompt(tools: Sequence[BaseTool]) -> str:
    """The system-prompt part that teaches a tool-less model to write its calls as JSON."""
    lines = []
    for tool in tools:
        schema = tool.tool_call_schema.model_json_schema()  # type: ignore[union-attr]
        props = schema.get("properties", {})
        args = {name: _type_of(prop) for name, prop in props.items()}
        required = schema.get("required", [])
        lines.append(f"- {tool.name}: {tool.description}\n  arguments: "
                     f"{json.dumps(args)}; required: {json.dumps(required)}")
    return render("text_tools.md", tools="\n".join(lines))
