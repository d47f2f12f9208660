"""``ChatOllama`` speaking Egaki's dialect: what the OpenAI path gets from its client.

* **One quiet retry** when the runner answers HTTP 5xx before any output (a crashed
  llama.cpp runner is restarted by Ollama; the second try usually answers). A second 5xx
  becomes :class:`~tools.core.errors.ChatServerError` with the server's own words.
* **HTTP 400 "does not support tools"** becomes :class:`~tools.core.errors.ToolsRefused`,
  so the chat can switch that model to tool calls written as text (and remember it).
* **A token budget per structured call**: ``bind(format=schema)`` also sets
  ``num_predict`` from the schema's size (:func:`tools.llm.schema_bounds.token_budget`).
* **Degenerate repetition stops early**: a reply looping on one phrase
  (:func:`tools.llm.degenerate.loop_start`) is no longer read (closing the stream stops
  Ollama generating); a structured answer cut that way takes the retry path.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import ollama
from langchain_core.messages import BaseMessage
from langchain_ollama import ChatOllama

from tools.core.errors import NO_TOOLS, ChatServerError, EgakiError, ToolsRefused
from tools.llm.degenerate import loop_start
from tools.llm.schema_bounds import token_budget

log = logging.getLogger(__name__)

ATTEMPTS = 2  # one quiet retry


def _content(part: Mapping[str, Any] | str) -> str:
    """The text of one stream part (the client's ``ChatResponse`` or a plain mapping)."""
    message = part.get("message") if isinstance(part, Mapping) else getattr(part, "message", None)
    if isinstance(message, Mapping):
        return str(message.get("content") or "")
    return str(getattr(message, "content", "") or "")


class LocalChatOllama(ChatOllama):
    """ChatOllama with a quiet 5xx retry, Egaki's errors, a schema-sized ``num_predict`` and
    an early stop on repetition loops."""

    def _chat_params(self, messages: list[BaseMessage], stop: list[str] | None = None,
                     **kwargs: Any) -> dict[str, Any]:
        params = super()._chat_params(messages, stop, **kwargs)
        schema, options = params.get("format"), params.get("options")
        if isinstance(schema, dict) and isinstance(options, dict):
            options.setdefault("num_predict", token_budget(schema))
        return params

    def _egaki(self, err: ollama.ResponseError) -> EgakiError:
        text = str(err.error)
        if NO_TOOLS.search(text):
            return ToolsRefused.of("llm_no_tools", model=self.model)
        return ChatServerError.of("server_refused", url=str(self.base_url or ""),
                                  status=err.status_code, detail=text[:300])

    def _retry(self, err: ollama.ResponseError, attempt: int, started: bool) -> None:
        """Raise unless this is a first 5xx before any output (then: quietly again)."""
        if started or attempt + 1 >= ATTEMPTS or err.status_code < 500:
            raise self._egaki(err) from err
        log.info("chat server answered %s (%s); retrying once", err.status_code, err.error)

    async def _acreate_chat_stream(self, messages: list[BaseMessage],
                                   stop: list[str] | None = None,
                                   **kwargs: Any) -> AsyncIterator[Mapping[str, Any] | str]:
        for attempt in range(ATTEMPTS):
            started, text = False, ""
            try:
                async for part in super()._acreate_chat_stream(messages, stop, **kwargs):
                    started = True
                    text += _content(part)
                    yield part
                    if _content(part) and loop_start(text) is not None:
                        log.warning("repetition loop in the reply; stopped at %d chars", len(text))
                        return
                return
            except ollama.ResponseError as err:
                self._retry(err, attempt, started)

    def _create_chat_stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                            **kwargs: Any) -> Iterator[Mapping[str, Any] | str]:
        for attempt in range(ATTEMPTS):
            started, text = False, ""
            try:
                for part in super()._create_chat_stream(messages, stop, **kwargs):
                    started = True
                    text += _content(part)
                    yield part
                    if _content(part) and loop_start(text) is not None:
                        log.warning("repetition loop in the reply; stopped at %d chars", len(text))
                        return
                return
            except ollama.ResponseError as err:
                self._retry(err, attempt, started)
