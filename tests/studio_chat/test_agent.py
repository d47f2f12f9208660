"""The tool-calling loop: streaming, tool execution, errors fed back to the model."""

from __future__ import annotations

from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool

from assistant.chat.agent import ChatAgent
from tests.support.fake_chat import ScriptedChatModel, tool_call
from tools.core.errors import InvalidRequest


@tool
def add(a: int, b: int) -> str:
    """Add two numbers."""
    return str(a + b)


@tool
def picky(size: int) -> str:
    """Reject odd sizes with a teaching message."""
    if size % 8:
        raise InvalidRequest.of(
            "request_invalid", detail=f"size has to be a multiple of 8 but is {size}"
        )
    return "ok"


class Sink:
    def __init__(self) -> None:
        self.tokens: list[str] = []

    async def __call__(self, token: str) -> None:
        self.tokens.append(token)


async def test_reply_is_streamed_token_by_token() -> None:
    model = ScriptedChatModel().enqueue("Hello there, artist!")
    sink = Sink()
    turn = await ChatAgent(model, system_prompt="be nice").respond([HumanMessage("hi")], sink)
    assert len(sink.tokens) > 3
    assert "".join(sink.tokens) == "Hello there, artist!"
    assert turn.text == "Hello there, artist!"
    assert isinstance(model.history[0][0], SystemMessage)


async def test_tool_call_runs_and_result_goes_back_to_model() -> None:
    model = ScriptedChatModel().enqueue(tool_call("add", a=2, b=3), "The sum is 5.")
    turn = await ChatAgent(model, [add]).respond([HumanMessage("2+3?")], Sink())
    assert model.bound_tools == ["add"]
    tool_msgs = [m for m in model.history[1] if isinstance(m, ToolMessage)]
    assert [m.content for m in tool_msgs] == ["5"]
    assert turn.tool_calls[0]["args"] == {"a": 2, "b": 3}
    assert turn.text == "The sum is 5."


async def test_tool_error_is_returned_to_model_not_raised() -> None:
    model = ScriptedChatModel().enqueue(tool_call("picky", size=500), "Let me fix that.")
    await ChatAgent(model, [picky]).respond([HumanMessage("go")], Sink())
    fed_back = next(m for m in model.history[1] if isinstance(m, ToolMessage))
    assert "multiple of 8" in str(fed_back.content)


async def test_unknown_tool_named_back_to_model() -> None:
    model = ScriptedChatModel().enqueue(tool_call("nope"), "Sorry.")
    await ChatAgent(model, [add]).respond([HumanMessage("x")], Sink())
    fed_back = next(m for m in model.history[1] if isinstance(m, ToolMessage))
    assert "Unknown tool 'nope'" in str(fed_back.content)


async def test_tool_rounds_are_bounded() -> None:
    model = ScriptedChatModel().enqueue(*[tool_call("add", a=1, b=1)] * 10)
    turn = await ChatAgent(model, [add], max_tool_rounds=2).respond([HumanMessage("x")], Sink())
    assert len(turn.tool_calls) == 3
    assert len(model.replies) == 7
