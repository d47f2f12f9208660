"""Error mapping and schema bounds of the OpenAI-compatible backend (no server needed)."""

from __future__ import annotations

from tools.core.errors import ContextTooLong, ModelMissing
from tools.llm.openai_errors import translate_status
from tools.llm.schema_bounds import cap_schema, token_budget


def test_model_not_found_texts_from_other_servers() -> None:
    for status, body in [
        (404, {"error": {"message": "The model `x` does not exist.", "type": "NotFoundError"}}),
        (404, {"error": {"message": 'model "x" not found, try pulling it first'}}),
        (400, {"error": {"message": "Model 'x' is not loaded"}}),
    ]:
        assert isinstance(translate_status(status, body, url="u", model="x"), ModelMissing)
    vllm = {"message": "This model's maximum context length is 4096 tokens. However, you "
                       "requested 5000 tokens (4990 in the messages, 10 in the completion)."}
    assert isinstance(translate_status(400, vllm, url="u", model="x"), ContextTooLong)


def test_unbounded_schemas_get_caps_and_a_token_budget() -> None:
    schema = {"type": "object", "properties": {
        "a": {"type": "string"}, "b": {"type": "array", "items": {"type": "string"}},
        "c": {"type": "string", "enum": ["x", "y"]}, "d": {"type": ["string", "null"]}}}
    assert token_budget(schema) == 1024  # unbounded: the fallback cap
    capped = cap_schema(schema, 100, 4)
    assert capped["properties"]["a"]["maxLength"] == 100
    assert capped["properties"]["b"]["maxItems"] == 4
    assert "maxLength" not in capped["properties"]["c"]
    assert capped["properties"]["d"]["maxLength"] == 100
    assert 64 <= token_budget(capped) < 1024


async def test_one_quiet_retry_on_a_runner_500() -> None:
    import httpx

    from tools.core.settings import Settings
    from tools.llm.openai_gateway import OpenAICompatGateway

    calls: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            return httpx.Response(500, json={"error": {"message": "runner crashed"}})
        return httpx.Response(200, json={
            "id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "hello"}}],
        })

    settings = Settings(llm_api="openai", openai_base_url="http://127.0.0.1:9/v1")
    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    chat = OpenAICompatGateway(settings).chat_model("m", http_async_client=client)
    reply = await chat.ainvoke("hi")
    assert reply.content == "hello" and len(calls) == 2


async def test_a_schema_reply_cut_at_the_token_limit_reaches_the_retry_path() -> None:
    """The openai client raises LengthFinishReasonError for a cut JSON-schema reply; the
    structured-output check must see the cut text instead (retry, then a clear message)."""
    import httpx

    from tools.core.settings import Settings
    from tools.llm.openai_gateway import OpenAICompatGateway

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={
            "id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "length",
                         "message": {"role": "assistant", "content": '{"subject": "two wom'}}],
        })

    settings = Settings(llm_api="openai", openai_base_url="http://127.0.0.1:9/v1")
    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    chat = OpenAICompatGateway(settings).chat_model("m", http_async_client=client)
    schema = {"type": "object", "properties": {"subject": {"type": "string"}}}
    reply = await chat.bind(format=schema).ainvoke("hi")
    assert reply.content == '{"subject": "two wom'
