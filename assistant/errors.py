"""The error hierarchy. Every message is safe to show a user and says what to do next.

Only the UI layer catches broad exceptions; everything below raises one of these.
``ja`` carries the Japanese text so the chat can answer in the user's language.
"""

from __future__ import annotations


class EgakiError(Exception):
    """Base class: ``str(err)`` is the English message, ``err.ja`` the Japanese one."""

    def __init__(self, message: str, ja: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.ja = ja or message

    def localized(self, lang: str) -> str:
        return self.ja if lang.startswith("ja") else self.message


class ConfigError(EgakiError):
    """Settings are inconsistent or unsafe."""


class OllamaUnavailable(EgakiError):
    """The Ollama server cannot be reached."""


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
