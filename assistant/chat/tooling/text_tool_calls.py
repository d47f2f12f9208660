"""Tool calls that a model wrote as JSON text instead of real ``tool_calls``.

Small local models (and some chat templates) print ``{"name": "generate_image",
"arguments": {...}}`` — bare, in a code fence, or in ``<tool_call>`` tags — as the message
content. The agent turns such a reply into a real tool call and never shows it raw.
Only names of bound tools count, so ordinary JSON in a reply is left alone.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection
from typing import Any

_WRAPPERS = re.compile(r"^\s*(?:```(?:json)?|<tool_call>)\s*|\s*(?:```|</tool_call>)\s*$", re.I)
_ARG_KEYS = ("arguments", "parameters", "args", "input")


def may_be_tool_call(text: str) -> bool:
    """True while a reply's start could still become a JSON tool call (hold it back)."""
    head = text.lstrip()[:11].lower()
    return head.startswith(("{", "[", "```", "<tool_call>")) or "<tool_call>".startswith(head) \
        or "```".startswith(head)


def parse_text_tool_calls(text: str, tools: Collection[str]) -> list[dict[str, Any]]:
    """LangChain-shaped tool calls found in ``text``; [] when it is not a tool call."""
    body = _WRAPPERS.sub("", text.strip()).strip()
    if not body.startswith(("{", "[")):
        return []
    try:
        obj = json.loads(body)
    except ValueError:
        return []
    items = obj if isinstance(obj, list) else [obj]
    calls = []
    for item in items:
        if not isinstance(item, dict):
            return []
        if isinstance(item.get("function"), dict):  # OpenAI's {"type": "function", ...}
            item = item["function"]
        name = item.get("name")
        args: Any = next((item[k] for k in _ARG_KEYS if k in item), {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                return []
        if name not in tools or not isinstance(args, dict):
            return []
        calls.append({"name": name, "args": args, "id": f"text-{uuid.uuid4().hex[:8]}",
                      "type": "tool_call"})
    return calls
