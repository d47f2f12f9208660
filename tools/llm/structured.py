"""One structured-output call to the chat model, with one corrective retry and a counter.

The schema travels as a JSON schema in Ollama's ``format`` field (what
``ChatOllama.with_structured_output(method="json_schema")`` does), never as a forced tool
call: small local models follow a grammar far better than a tool contract. We parse the
raw text ourselves so that the usual small-model slips are absorbed instead of failing:
``<think>`` blocks, code fences, prose around the JSON, and a tool-call envelope
(``{"name": ..., "arguments": {...}}``) written as plain text. Anything still unusable
gets one retry with a short correction; a second failure raises :class:`ModelOutputError`.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import BaseModel, ValidationError

from tools.core.errors import ModelOutputError
from tools.core.messages import Message
from tools.llm.schema_bounds import cap_schema

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)
Check = Callable[[Any], "str | None"]

_THINK = re.compile(r"<think>.*?(</think>|$)", re.S | re.I)
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)


@dataclass
class LLMCallCounter:
    """Counts model invocations (retries included), in total and per purpose."""

    total: int = 0
    by_purpose: Counter[str] = field(default_factory=Counter)

    def add(self, purpose: str) -> None:
        self.total += 1
        self.by_purpose[purpose] += 1


class OutputProblem(ValueError):
    """The reply could not be turned into the schema; ``str()`` is the correction hint."""


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema sent as ``format``: ``$ref``s inlined and every key required.

    Ollama turns the schema into a grammar; a required key makes a small model write it
    (``null`` where allowed) instead of stopping early. Parsing stays lenient.
    """
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            # drop schema titles (noise for the grammar), not a property named "title"
            out = {
                k: resolve(v) for k, v in node.items() if not (k == "title" and isinstance(v, str))
            }
            if isinstance(out.get("properties"), dict) and "type" in out:
                out["required"] = list(out["properties"])
            return out
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return dict(resolve(schema))


def _text_of(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    parts = [p if isinstance(p, str) else str(p.get("text", "")) for p in content]
    return "".join(parts)


def _unwrap_tool_envelope(obj: Any, fields: set[str]) -> Any:
    """``{"name": f, "arguments": {...}}`` (and friends) → the arguments object."""
    for _ in range(3):  # envelopes nest at most a couple of levels
        if not isinstance(obj, dict) or fields & obj.keys():
            return obj
        if isinstance(obj.get("tool_calls"), list) and obj["tool_calls"]:
            obj = obj["tool_calls"][0]
        elif isinstance(obj.get("function"), dict):
            obj = obj["function"]
        else:
            inner = next((obj[k] for k in ("arguments", "parameters", "args") if k in obj), None)
            if inner is None:
                return obj
            obj = json.loads(inner) if isinstance(inner, str) else inner
    return obj


def parse_reply(message: BaseMessage, schema: type[T]) -> T:
    """Validate a raw model reply into ``schema`` or raise :class:`OutputProblem`."""
    fields = set(schema.model_fields)
    if isinstance(message, AIMessage) and message.tool_calls:
        obj: Any = message.tool_calls[0]["args"]
    else:
        text = _THINK.sub("", _text_of(message)).strip()
        fenced = _FENCE.search(text)
        if fenced:
            text = fenced.group(1).strip()
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            raise OutputProblem("Your reply contained no JSON object.")
        try:
            obj = json.loads(text[start : end + 1])
        except ValueError as err:
            raise OutputProblem(f"Your reply was not valid JSON ({err}).") from err
    try:
        obj = _unwrap_tool_envelope(obj, fields)
    except ValueError as err:
        raise OutputProblem(f"The tool-call arguments were not valid JSON ({err}).") from err
    try:
        return schema.model_validate(obj)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'object'}: {e['msg']}"
            for e in err.errors()[:5]
        )
        raise OutputProblem(f"Your JSON did not match the schema ({problems}).") from err


# How each step is named to the person; another purpose is shown as it is.
_STEP_NAMES = {"interview": "step_interview", "spec": "step_spec", "variations": "step_variations"}


def output_error(purpose: str, detail: str) -> ModelOutputError:
    """The user-facing error after the retry also failed."""
    step = Message.of(_STEP_NAMES[purpose]) if purpose in _STEP_NAMES else purpose
    return ModelOutputError.of("model_output_unusable", step=step, detail=detail)


class StructuredLLM:
    """Asks ``model`` for one schema-shaped answer; counts every call in ``counter``."""

    def __init__(
        self,
        model: BaseChatModel,
        counter: LLMCallCounter | None = None,
        max_attempts: int = 2,
    ) -> None:
        self.model = model
        self.counter = counter if counter is not None else LLMCallCounter()
        self.max_attempts = max_attempts

    async def ask(
        self,
        schema: type[T],
        messages: Sequence[BaseMessage],
        *,
        purpose: str,
        check: Check | None = None,
    ) -> T:
        """One call (two when the first answer is unusable) returning a ``schema`` instance.

        ``check(parsed)`` may return a correction (e.g. "write it in English") to reject
        an otherwise valid answer; it then counts as unusable.
        """
        # every string and array bounded: a small model cannot ramble until the token limit
        bound = self.model.bind(format=cap_schema(inline_schema(schema), 300, 8))
        convo = list(messages)
        problem = ""
        for attempt in range(self.max_attempts):
            self.counter.add(purpose)
            reply = await bound.ainvoke(convo)
            try:
                parsed = parse_reply(reply, schema)
                correction = check(parsed) if check else None
                if correction is None:
                    return parsed
                problem = correction
            except OutputProblem as err:
                problem = str(err)
            log.warning("%s: unusable model output (attempt %d): %s", purpose, attempt + 1, problem)
            convo += [
                AIMessage(content=_text_of(reply)[:2000]),
                HumanMessage(
                    f"{problem} Answer again with ONLY one JSON object that matches the schema: "
                    "no prose, no code fence, no tool call."
                ),
            ]
        raise output_error(purpose, problem.rstrip("."))
