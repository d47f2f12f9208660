"""The error hierarchy. Every message is safe to show a user and says what to do next.

Only the UI layer catches broad exceptions; everything below raises one of these, made
with :meth:`EgakiError.of` from a key of the message catalogue
(:mod:`tools.core.messages`), so the UI edge renders it in the user's language.
"""

from __future__ import annotations

from typing import Any, Self

from tools.core.messages import Message


class EgakiError(Exception):
    """Base class: ``str(err)`` is the English message; :meth:`localized` any language."""

    def __init__(self, message: str | Message, ja: str | None = None) -> None:
        self.note = message if isinstance(message, Message) else None
        english = message.render("en") if isinstance(message, Message) else message
        super().__init__(english)
        self.message = english
        self.ja = message.render("ja") if isinstance(message, Message) else (ja or english)

    @classmethod
    def of(cls, key: str, /, **values: Any) -> Self:
        """The error whose text is catalogue message ``key`` filled with ``values``."""
        return cls(Message(key, values))

    def localized(self, lang: str) -> str:
        if self.note is not None:
            return self.note.render(lang)
        return self.ja if lang.startswith("ja") else self.message


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
    """A named model is not installed (Ollama or image model)."""

    def __init__(self, message: str, ja: str | None = None, *, model: str = "") -> None:
        super().__init__(message, ja)
        self.model = model


class CapabilityMissing(EgakiError):
    """A model lacks a needed capability (tools, vision)."""


class InvalidRequest(EgakiError):
    """A request (size, steps, sampler, file...) is not acceptable."""


class GenerationCancelled(EgakiError):
    """The user stopped a running job."""


class EngineError(EgakiError):
    """The image backend failed in a way the user can act on."""


class ModelOutputError(EgakiError):
    """The language model kept answering in a shape we cannot use."""
