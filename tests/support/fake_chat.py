"""A scripted LangChain chat model for pure agent tests.

``ScriptedChatModel(replies=[...])`` answers each call with the next reply (a string or
an ``AIMessage`` with ``tool_calls``), streaming content word by word and tool calls as
chunks, like a real provider. It records every prompt (``history``) and the tools bound.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field


class ScriptedChatModel(BaseChatModel):
    """Answers from a queue; ``enqueue`` more, read ``history`` and ``bound_tools``."""

    replies: list[AIMessage | str] = Field(default_factory=list)
    history: list[list[BaseMessage]] = Field(default_factory=list)
    bound_tools: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def enqueue(self, *replies: AIMessage | str) -> ScriptedChatModel:
        self.replies.extend(replies)
        return self

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        self.bound_tools = [getattr(t, "name", str(t)) for t in tools]
        return self

    def _next(self, messages: list[BaseMessage]) -> AIMessage:
        self.history.append(list(messages))
        if not self.replies:
            raise AssertionError("ScriptedChatModel ran out of replies")
        reply = self.replies.pop(0)
        return AIMessage(content=reply) if isinstance(reply, str) else reply

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next(messages))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        reply = self._next(messages)
        text = reply.content if isinstance(reply.content, str) else ""
        for token in (p for p in re.split(r"(\s)", text) if p):
            yield ChatGenerationChunk(message=AIMessageChunk(content=token, id=reply.id))
        for i, call in enumerate(reply.tool_calls):
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    id=reply.id,
                    tool_call_chunks=[
                        {
                            "name": call["name"],
                            "args": json.dumps(call["args"]),
                            "id": call.get("id") or f"call_{i}",
                            "index": i,
                        }
                    ],
                )
            )


def tool_call(name: str, call_id: str = "call_1", **args: Any) -> AIMessage:
    """An AIMessage asking for one tool call."""
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])
