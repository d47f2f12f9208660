"""The tool-calling loop: streaming, tool execution, errors fed back to the model."""

from __future__ import annotations

from langchain_core.messages import HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool

from assistant.chat.tooling.agent import ChatAgent
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


async def test_tool_call_written_as_json_text_runs_and_is_never_shown() -> None:
    model = ScriptedChatModel().enqueue(
        '```json\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n```', "The sum is 5."
    )
    sink = Sink()
    turn = await ChatAgent(model, tools=[add]).respond([HumanMessage("2+3?")], sink)
    assert [c["name"] for c in turn.tool_calls] == ["add"]
    assert any(isinstance(m, ToolMessage) and m.content == "5" for m in turn.messages)
    shown = "".join(sink.tokens)
    assert "arguments" not in shown and shown == "The sum is 5."


async def test_ordinary_json_or_unknown_names_in_a_reply_are_shown() -> None:
    model = ScriptedChatModel().enqueue('{"name": "nope", "arguments": {}}')
    sink = Sink()
    turn = await ChatAgent(model, tools=[add]).respond([HumanMessage("json?")], sink)
    assert not turn.tool_calls and "nope" in "".join(sink.tokens)


async def test_a_repetition_loop_is_cut_early() -> None:
    model = ScriptedChatModel().enqueue("Sure! " + "the beach is nice, " * 40)
    sink = Sink()
    turn = await ChatAgent(model).respond([HumanMessage("beach?")], sink)
    assert turn.text.count("the beach is nice") <= 2
    assert len("".join(sink.tokens)) < 200  # stopped reading well before the end


def test_loop_detector_leaves_ordinary_text_alone() -> None:
    from tools.llm.degenerate import loop_start

    assert loop_start("Two women play beach volleyball at sunset. Want a night version?") is None
    assert loop_start("ha ha ha ha") is None
    assert loop_start("x " + "relief-" * 20) is not None
