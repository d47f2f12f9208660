"""The LangChain tool-calling loop behind the chat.

A deliberately small agent: stream the model's reply token by token; when the reply
carries tool calls, run them, feed the results back and stream again, up to a fixed
number of rounds. Works with any LangChain chat model (``ChatOllama`` in the app, fake
models in tests). Tool errors are returned to the model as text so it can correct itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import BaseTool

from assistant.chat.tooling.text_tool_calls import may_be_tool_call, parse_text_tool_calls
from tools.core.errors import EgakiError
from tools.llm.degenerate import loop_start

log = logging.getLogger(__name__)

TokenSink = Callable[[str], Awaitable[None]]
# told after each tool run: the call (name, args, id) and the text the model gets back
ToolSink = Callable[[dict[str, Any], str], Awaitable[None]]


@dataclass
class AgentTurn:
    """What one user turn produced: the new messages and the tool calls made."""

    messages: list[BaseMessage] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        for msg in reversed(self.messages):
            if isinstance(msg, AIMessage) and isinstance(msg.content, str) and msg.content:
                return msg.content
        return ""


class ChatAgent:
    """Streams replies from ``model`` and runs ``tools`` it asks for."""

    def __init__(
        self,
        model: BaseChatModel,
        tools: Sequence[BaseTool] = (),
        system_prompt: str = "",
        max_tool_rounds: int = 4,
        native_tools: bool = True,
    ) -> None:
        self.tools = {t.name: t for t in tools}
        # without native tools the model writes its calls as JSON text (chat/tool_mode.py)
        self.model: Any = model.bind_tools(list(tools)) if tools and native_tools else model
        self.system_prompt = system_prompt
        self.max_tool_rounds = max_tool_rounds

    async def respond(self, history: Sequence[BaseMessage], on_token: TokenSink,
                      on_tool: ToolSink | None = None) -> AgentTurn:
        """Answer the conversation ``history`` (ending with the user's message);
        ``on_tool(call, result)`` hears each tool run as it happens."""
        turn = AgentTurn()
        base: list[BaseMessage] = [SystemMessage(self.system_prompt)] if self.system_prompt else []
        for _ in range(self.max_tool_rounds + 1):
            reply = await self._stream(base + list(history) + turn.messages, on_token)
            turn.messages.append(reply)
            if not reply.tool_calls:
                return turn
            for call in reply.tool_calls:
                turn.tool_calls.append(dict(call))
                result = await self._run_tool(call)
                turn.messages.append(result)
                if on_tool is not None:
                    await on_tool(dict(call), str(result.content))
        log.warning("Stopped after %d tool rounds", self.max_tool_rounds)
        return turn

    async def _stream(self, messages: list[BaseMessage], on_token: TokenSink) -> AIMessage:
        full: AIMessageChunk | None = None
        held = ""  # a reply that may be a tool call written as JSON text: shown only if not
        emitted = False
        async for chunk in self.model.astream(messages):
            if not isinstance(chunk, AIMessageChunk):
                continue
            full = chunk if full is None else full + chunk
            text = chunk.content if isinstance(chunk.content, str) else ""
            if not text:
                continue
            if self.tools and not emitted and (held + text).strip() == "":
                held += text
                continue
            if self.tools and not emitted and may_be_tool_call(held + text):
                held += text
                continue
            text, held, emitted = held + text, "", True
            await on_token(text)
            cut = loop_start(str(full.content))
            if cut is not None:  # a loop until the token limit: stop reading, keep one round
                log.warning("Degenerate repetition in the reply; stopped after %d chars", cut)
                full = AIMessageChunk(content=str(full.content)[:cut].rstrip(), id=full.id)
                break
        if full is None:
            return AIMessage(content="")
        content = full.content
        calls: list[Any] = list(full.tool_calls)
        if not calls and isinstance(content, str):
            calls = parse_text_tool_calls(content, self.tools)
            if calls:
                log.info("Tool call written as text; running it: %s", [c["name"] for c in calls])
                content, held = "", ""
        if held:
            await on_token(held)
        return AIMessage(
            content=content,
            tool_calls=calls,
            id=full.id,
            response_metadata=full.response_metadata,
        )

    async def _run_tool(self, call: Any) -> ToolMessage:
        name, call_id = call["name"], call.get("id") or ""
        tool = self.tools.get(name)
        if tool is None:
            content = f"Unknown tool {name!r}. Available: {', '.join(self.tools) or 'none'}."
        else:
            try:
                result = await tool.ainvoke(call["args"])
                content = result if isinstance(result, str) else json.dumps(result, default=str)
            except EgakiError as err:
                content = f"Error: {err.message}"
        return ToolMessage(content=content, tool_call_id=call_id, name=name)
