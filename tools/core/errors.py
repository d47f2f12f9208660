"""The error hierarchy. Every message is safe to show a user and says what to do next.

Only the UI layer catches broad exceptions; everything below raises one of these, made
with :meth:`EgakiError.of` from a key of the message catalogue
(:mod:`tools.core.messages`), so the UI edge renders it in the user's language with
:meth:`EgakiError.localized`. ``str(err)`` and :attr:`EgakiError.message` are the English
text, for logs and for the language model.
"""

from __future__ import annotations

import re
from typing import Any, Self

from tools.core.messages import Message, placeholders


class EgakiError(Exception):
    """Base class: ``EngineError.of("key", **values)``; :meth:`localized` in any language."""

    def __init__(self, note: Message, /) -> None:
        if not isinstance(note, Message):
            name = type(self).__name__
            raise TypeError(f"{name} is made from a catalogue key: {name}.of(key, **values)")
        self.note = note
        super().__init__(note.localized("en"))

    @classmethod
    def of(cls, key: str, /, **values: Any) -> Self:
        """The error whose text is catalogue message ``key`` filled with ``values``."""
        return cls(Message.of(key, **values))

    @property
    def message(self) -> str:
        """The English text."""
        return self.note.localized("en")

    def localized(self, lang: str) -> str:
        """The text in the reader's language ('en', 'ja', 'ja-JP'…)."""
        return self.note.localized(lang)


class ConfigError(EgakiError):
    """Settings are inconsistent or unsafe."""


class OllamaUnavailable(EgakiError):
    """The Ollama server cannot be reached."""


class ChatServerUnavailable(OllamaUnavailable):
    """An OpenAI-compatible chat server cannot be reached (caught wherever Ollama's is)."""


class ChatServerError(EgakiError):
    """The chat server refused a request (auth, 5xx) — its own words in the message."""


class ContextTooLong(EgakiError):
    """The conversation does not fit the model's context window."""


class ModelMissing(EgakiError):
    """A named model is not installed (Ollama or image model); :attr:`model` names it."""

    model: str = ""

    @classmethod
    def of(cls, key: str, /, *, model: str = "", **values: Any) -> Self:
        """Like :meth:`EgakiError.of`; ``model`` is kept, and fills a ``{model}`` placeholder."""
        wanted = {"model": model} if "model" in placeholders(key) else {}
        note = Message.of(key, **values, **wanted)
        err = cls(note)
        err.model = model
        return err


class CapabilityMissing(EgakiError):
    """A model lacks a needed capability (tools, vision)."""


class ToolsRefused(CapabilityMissing):
    """The server refused tool calling for this model (Ollama: HTTP 400 "does not support
    tools"); the chat then writes tool calls as text instead
    (``assistant.chat.tooling.tool_mode``)."""


# How servers say it (Ollama's /api/chat and /v1, LM Studio, vLLM without a tool parser)
NO_TOOLS = re.compile(
    r"does not support tools|tools? (?:use |calling )?(?:is |are )?not supported"
    r"|auto\W?tool\W?choice requires",
    re.I,
)


class InvalidRequest(EgakiError):
    """A request (size, steps, sampler, file...) is not acceptable."""


class GenerationCancelled(EgakiError):
    """The user stopped a running job."""


class EngineError(EgakiError):
    """The image backend failed in a way the user can act on."""


class ModelOutputError(EgakiError):
    """The language model kept answering in a shape we cannot use."""
