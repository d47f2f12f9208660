"""``ChatOpenAI`` for a local OpenAI-compatible server, speaking Egaki's dialect.

* Errors come out as Egaki's (server down, model not loaded, context too long, no vision)
  instead of ``openai`` exceptions, so the chat shows the same clear localised messages as
  on the Ollama path.
* ``model.bind(format=schema)`` — what :mod:`tools.llm.structured` does for ``ChatOllama`` —
  becomes ``response_format: json_schema`` with unbounded strings/arrays capped and
  ``max_tokens`` from the schema's size, so ``StructuredLLM`` runs unchanged. A server
  declared without JSON-schema support gets no ``response_format``: the lenient parser and
  its one corrective retry then do the work.
* Images written as ``{"type": "image_url", "image_url": "data:..."}`` (accepted by
  ChatOllama) are sent in the OpenAI shape ``{"url": "data:..."}``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai import ChatOpenAI
from openai import LengthFinishReasonError
from pydantic import Field

from tools.llm.openai_errors import translate_error
from tools.llm.schema_bounds import cap_schema, response_format, token_budget


def openai_image_parts(messages: Any) -> Any:
    """Rewrite bare-string ``image_url`` parts of payload messages to ``{"url": ...}``."""
    if not isinstance(messages, list):
        return messages
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for i, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "image_url" \
                    and isinstance(part.get("image_url"), str):
                content[i] = {**part, "image_url": {"url": part["image_url"]}}
    return messages


class LocalChatOpenAI(ChatOpenAI):
    """ChatOpenAI with Egaki's errors, Ollama-style ``format=`` and bare image URLs."""

    egaki_available: list[str] = Field(default_factory=list, exclude=True)
    egaki_json_schema: bool = True
    egaki_cap_length: int = 300
    egaki_cap_items: int = 8

    def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None,
                             **kwargs: Any) -> dict[str, Any]:
        schema = kwargs.pop("format", None)
        if isinstance(schema, dict):
            capped = cap_schema(schema, self.egaki_cap_length, self.egaki_cap_items)
            if self.egaki_json_schema:
                kwargs.setdefault("response_format", response_format(capped))
            if self.max_tokens is None:
                kwargs.setdefault("max_tokens", token_budget(capped))
        elif schema == "json" and self.egaki_json_schema:
            kwargs.setdefault("response_format", {"type": "json_object"})
        payload = super()._get_request_payload(input_, stop=stop, **kwargs)
        openai_image_parts(payload.get("messages"))
        return payload

    def _egaki(self, err: BaseException) -> BaseException:
        timeout = self.request_timeout if isinstance(self.request_timeout, (int, float)) else 0
        return translate_error(err, url=str(self.openai_api_base or ""), model=self.model_name,
                               available=self.egaki_available, timeout_s=float(timeout)) or err

    def _cut_reply(self, err: LengthFinishReasonError) -> ChatResult:
        """A JSON-schema reply cut at ``max_tokens``: the openai client raises instead of
        parsing it; hand the cut text on, so the structured-output check sees invalid JSON
        and takes its retry-then-clear-message path (no traceback)."""
        return self._create_chat_result(err.completion)

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        try:
            return super()._generate(*args, **kwargs)
        except LengthFinishReasonError as err:
            return self._cut_reply(err)
        except Exception as err:
            raise self._egaki(err) from err

    async def _agenerate(self, *args: Any, **kwargs: Any) -> ChatResult:
        try:
            return await super()._agenerate(*args, **kwargs)
        except LengthFinishReasonError as err:
            return self._cut_reply(err)
        except Exception as err:
            raise self._egaki(err) from err

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        try:
            yield from super()._stream(*args, **kwargs)
        except Exception as err:
            raise self._egaki(err) from err

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        try:
            async for chunk in super()._astream(*args, **kwargs):
                yield chunk
        except Exception as err:
            raise self._egaki(err) from err
