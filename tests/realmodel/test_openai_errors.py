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
