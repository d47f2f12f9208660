"""``egaki compare-models``: Egaki's own tasks on several chat models, side by side.

For each model and each sample request: one streamed chat reply (time to first token,
tokens/s), one interview turn, one spec and one set of variations through the app's own
code (``Interviewer``, ``SpecBuilder``), and one tool call offer. Numbers, not taste:
schema-valid on the first try, the person's language kept in questions and replies, tool
calls made. The table reads like the one in the research notes; ``--json`` keeps every row.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.tools import tool

from assistant.prompting.builder import SpecBuilder
from assistant.prompting.interview import Interviewer, InterviewState
from tools.core.errors import EgakiError
from tools.core.messages import detect_language
from tools.llm.structured import LLMCallCounter

REQUESTS = (
    ("en", "two women playing beach volleyball"),
    ("ja", "ビーチバレーの写真を作りたい"),
    ("en", "a cat sleeping on a sofa in the afternoon sun"),
    ("ja", "夕暮れの海辺を歩く女の子"),
)
CHAT_SYSTEM = "You are Egaki, a friendly assistant that helps people make pictures. " \
              "Answer in the language the person writes in, in one or two sentences."


@tool
def generate_image(prompt: str) -> str:
    """Generate an image from an English Stable Diffusion prompt."""
    return "ok"


@dataclass
class ModelRow:
    """One model's numbers over all requests."""

    model: str
    ttft_s: list[float] = field(default_factory=list)
    tok_per_s: list[float] = field(default_factory=list)
    interview_s: list[float] = field(default_factory=list)
    spec_s: list[float] = field(default_factory=list)
    variations_s: list[float] = field(default_factory=list)
    steps: int = 0  # structured steps attempted
    first_try_valid: int = 0
    lang_checks: int = 0
    lang_match: int = 0
    tool_offers: int = 0
    tool_calls: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def mean(xs: Sequence[float]) -> float | None:
            return round(sum(xs) / len(xs), 2) if xs else None

        def rate(a: int, b: int) -> float | None:
            return round(a / b, 2) if b else None

        return {
            "model": self.model, "ttft_s": mean(self.ttft_s), "tok_per_s": mean(self.tok_per_s),
            "s_per_interview_turn": mean(self.interview_s), "s_per_spec": mean(self.spec_s),
            "s_per_variations": mean(self.variations_s),
            "schema_valid_rate": rate(self.first_try_valid, self.steps),
            "language_match_rate": rate(self.lang_match, self.lang_checks),
            "tool_call_rate": rate(self.tool_calls, self.tool_offers),
            "peak_memory": "n/a (server does not report it)", "errors": len(self.errors),
        }


def _lang_ok(row: ModelRow, text: str, lang: str) -> None:
    if text.strip():
        row.lang_checks += 1
        row.lang_match += detect_language(text, "en") == lang


async def _chat(row: ModelRow, chat: Any, lang: str, request: str) -> None:
    t0 = time.perf_counter()
    first, text, out_tokens = None, "", 0
    async for chunk in chat.astream([SystemMessage(CHAT_SYSTEM), HumanMessage(request)]):
        if chunk.content and first is None:
            first = time.perf_counter() - t0
        text += chunk.content if isinstance(chunk.content, str) else ""
        usage = getattr(chunk, "usage_metadata", None)
        if usage:
            out_tokens = usage.get("output_tokens", 0)
    total = time.perf_counter() - t0
    if first is not None:
        row.ttft_s.append(first)
        if out_tokens and total > first:
            row.tok_per_s.append(out_tokens / (total - first))
    _lang_ok(row, text, lang)


async def _studio(row: ModelRow, chat: BaseChatModel, lang: str, request: str) -> None:
    counter = LLMCallCounter()
    t0 = time.perf_counter()
    result = await Interviewer(chat, counter=counter).step(InterviewState.start(lang), request)
    row.interview_s.append(time.perf_counter() - t0)
    row.steps += 1
    row.first_try_valid += counter.by_purpose.get("interview", 0) == 1
    for question in result.questions:
        _lang_ok(row, question, lang)
    builder = SpecBuilder(chat, counter=counter)
    t0 = time.perf_counter()
    spec = await builder.build(result.state, "sd15")
    row.spec_s.append(time.perf_counter() - t0)
    row.steps += 1
    row.first_try_valid += counter.by_purpose.get("spec", 0) == 1 and not builder.fell_back
    t0 = time.perf_counter()
    await builder.variations(spec, n=4)
    row.variations_s.append(time.perf_counter() - t0)
    row.steps += 1
    row.first_try_valid += counter.by_purpose.get("variations", 0) == 1


async def _tools(row: ModelRow, chat: BaseChatModel, limit: dict[str, Any],
                 request: str) -> None:
    row.tool_offers += 1
    bound = chat.bind_tools([generate_image], **limit)
    reply = await bound.ainvoke([HumanMessage(f"Draw: {request}")])
    calls = getattr(reply, "tool_calls", None) or []
    row.tool_calls += any(c.get("name") == "generate_image" and c["args"].get("prompt")
                          for c in calls)


async def compare(models: Sequence[str], make: Callable[[str], BaseChatModel],
                  requests: Sequence[tuple[str, str]] = REQUESTS,
                  on_progress: Callable[[str], None] = print,
                  limit: dict[str, Any] | None = None) -> list[ModelRow]:
    """Run every task on every model; a failing step is counted, never fatal.

    ``limit`` caps free replies (``{"max_tokens": 128}``; Ollama: ``num_predict``): a small
    model otherwise babbles until its context is full.
    """
    limit = limit or {}
    rows = []
    for model in models:
        row = ModelRow(model)
        chat = make(model)
        for lang, request in requests:
            steps = {"chat": _chat(row, chat.bind(**limit), lang, request),
                     "studio": _studio(row, chat, lang, request),
                     "tools": _tools(row, chat, limit, request)}
            for name, step in steps.items():
                t0 = time.perf_counter()
                try:
                    await step
                except EgakiError as err:
                    row.errors.append(f"{request}: {err.message}")
                on_progress(f"{model}: {request}: {name} {time.perf_counter() - t0:.1f} s")
        rows.append(row)
    return rows


def table(rows: Sequence[ModelRow]) -> str:
    """The Markdown table of :meth:`ModelRow.summary`."""
    cols = ["model", "ttft_s", "tok_per_s", "s_per_interview_turn", "s_per_spec",
            "s_per_variations", "schema_valid_rate", "language_match_rate", "tool_call_rate",
            "peak_memory", "errors"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        s = row.summary()
        lines.append("| " + " | ".join("—" if s[c] is None else str(s[c]) for c in cols) + " |")
    return "\n".join(lines)


def as_json(rows: Sequence[ModelRow]) -> str:
    return json.dumps([{"summary": r.summary(), "raw": asdict(r)} for r in rows],
                      ensure_ascii=False, indent=2)
