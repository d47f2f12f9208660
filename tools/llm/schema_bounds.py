"""Bounds for structured answers: ``response_format``, caps on unbounded fields, token budget.

Grammar bounds (``maxLength``, ``maxItems``) are what turn a small model's ramble into a
short valid answer: llama.cpp and Ollama compile them into the grammar, so the model must
close the string or array. ``max_tokens`` from the schema's size only caps the time (measured
on SmolLM2-135M: unbounded schemas ran to 1024 tokens and were cut into invalid JSON; with
bounds 100% of calls stopped by themselves).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any


def response_format(schema: dict[str, Any], name: str = "answer") -> dict[str, Any]:
    """OpenAI ``response_format`` for a JSON schema. ``strict`` stays False: OpenAI's strict
    mode rejects optional keys; local servers ignore it anyway."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "answer"
    return {"type": "json_schema", "json_schema": {"name": safe, "schema": schema, "strict": False}}


def cap_schema(schema: Any, max_length: int = 300, max_items: int = 8) -> Any:
    """A copy of ``schema`` where strings without ``maxLength`` get ``max_length`` and arrays
    without ``maxItems`` get ``max_items`` (0 leaves that kind alone); enums stay as they are."""
    if isinstance(schema, list):
        return [cap_schema(s, max_length, max_items) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: cap_schema(v, max_length, max_items) for k, v in schema.items()}
    types = out.get("type")
    types = types if isinstance(types, list) else [types]
    plain = "enum" not in out and "const" not in out
    if "string" in types and max_length and "maxLength" not in out and plain:
        out["maxLength"] = max_length
    if "array" in types and max_items and "maxItems" not in out:
        out["maxItems"] = max_items
    return out


def max_output_chars(schema: Any) -> float:
    """Upper bound on the compact JSON text the schema allows (``inf`` if unbounded)."""
    if not isinstance(schema, dict):
        return math.inf
    if "enum" in schema:
        return max((len(json.dumps(v, ensure_ascii=False)) for v in schema["enum"]), default=4)
    if "const" in schema:
        return len(json.dumps(schema["const"], ensure_ascii=False))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return max((max_output_chars(s) for s in schema[key]), default=math.inf)
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    best = 0.0
    for t in types:
        if t == "null":
            best = max(best, 4)
        elif t == "boolean":
            best = max(best, 5)
        elif t in ("integer", "number"):
            best = max(best, 24)
        elif t == "string":
            best = max(best, 2 + 2 * schema.get("maxLength", math.inf))  # escapes: x2
        elif t == "array":
            item = max_output_chars(schema.get("items", {})) + 1
            best = max(best, 2 + schema.get("maxItems", math.inf) * item)
        elif t == "object":
            props = schema.get("properties", {})
            if schema.get("additionalProperties") not in (None, False) and not props:
                return math.inf
            best = max(best, 2 + sum(len(k) + 4 + max_output_chars(v) for k, v in props.items()))
        else:
            return math.inf
    return best


def token_budget(schema: dict[str, Any], *, floor: int = 64, ceiling: int = 2048,
                 unbounded: int = 1024) -> int:
    """``max_tokens`` for a structured answer: the largest valid answer (~2.5 chars/token,
    plus slack per field for whitespace and CJK), never a runaway."""
    chars = max_output_chars(schema)
    if math.isinf(chars):
        return unbounded
    fields = json.dumps(schema).count('"type"')
    return int(min(ceiling, max(floor, chars / 2.5 + 8 * fields + 32)))
