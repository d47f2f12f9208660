"""Data types and pure helpers for the fake Ollama server in :mod:`tests.support.fake_ollama`.

Script file format (``python -m tests.support.fake_ollama --script FILE``, or the
``ollama`` fixture's ``@pytest.mark.ollama(script=FILE)``; ``.json``, or YAML for any other
suffix): a list consumed in order by ``/api/chat`` and ``/api/generate``. Each item is a
string (a plain text reply) or a mapping of :class:`Reply` fields::

    - "Hello! What shall we draw?"                  # plain text, streamed in chunks
    - content: "Drawing it now."
      tool_calls:                                   # name + arguments (a mapping)
        - {name: generate_image, arguments: {prompt: "a red fox"}}
    - data: {title: "Fox", tags: [animal]}          # structured output: sent as JSON text
    - {thinking: "Let me think...", content: "42"}  # needs a model with "thinking"
    - {error: "model runner crashed", status: 500}  # HTTP error before any output
    - {content: "one two three", error: "boom", error_after: 2}  # error line after 2 chunks
    - {content: "a long story", hangup_after: 1}   # drop the connection after 1 chunk
    - {content: "slowly now", delay: 0.5}           # seconds before each chunk

When the script runs out, a deterministic default reply is used: for a ``format`` request a
minimal JSON instance of the schema, otherwise an echo of the last user message.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

FIXED_TIME = "2025-06-01T12:00:00.000000Z"
PIECE = re.compile(r"\s*\S{1,8}|\s+")


def normalize_name(name: str) -> str:
    """``llama3`` → ``llama3:latest``, as Ollama resolves a name without a tag."""
    name = name.strip()
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def split_text(text: str) -> list[str]:
    """Split text into stream chunks of up to 8 non-blank characters; joins back losslessly."""
    return PIECE.findall(text)


@dataclass
class Reply:
    """One scripted answer of ``/api/chat`` (or ``/api/generate``).

    ``content``: text; ``thinking``: reasoning text, streamed before the content;
    ``tool_calls``: ``[{"name": ..., "arguments": {...}}]`` (the wire form
    ``{"function": {...}}`` is accepted too); ``data``: any JSON value sent as the content
    text (structured output), a string is sent as is; ``error`` + ``status``: an HTTP error
    ``{"error": ...}`` before any output, or, with ``error_after`` = k > 0, k chunks then an
    ``{"error": ...}`` line, as Ollama does mid-stream; ``hangup_after``: close the
    connection after that many chunks (0 = before the response); ``delay``: seconds before
    each chunk; ``done_reason``: of the final chunk.
    """

    content: str = ""
    thinking: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    data: Any = None
    error: str | None = None
    status: int = 500
    error_after: int = 0
    hangup_after: int | None = None
    delay: float = 0.0
    done_reason: str = "stop"

    @classmethod
    def coerce(cls, item: Reply | str | dict[str, Any]) -> Reply:
        """A :class:`Reply` from a string (content) or a mapping of fields."""
        if isinstance(item, Reply):
            return item
        if isinstance(item, str):
            return cls(content=item)
        if not isinstance(item, dict):
            raise TypeError(f"a reply is a string or a mapping, not {type(item).__name__}")
        unknown = set(item) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown reply field(s): {', '.join(sorted(unknown))}")
        return cls(**item)

    @property
    def text(self) -> str:
        """The content as sent: ``data`` serialised when given."""
        if self.data is None:
            return self.content
        return self.data if isinstance(self.data, str) else json.dumps(self.data)

    def wire_tool_calls(self) -> list[dict[str, Any]]:
        """Tool calls in Ollama's wire form."""
        out = []
        for i, call in enumerate(self.tool_calls):
            fn = call.get("function", call)
            args = fn.get("arguments") or {}
            out.append({"function": {"index": i, "name": fn["name"], "arguments": args}})
        return out


@dataclass
class FakeModel:
    """An installed (or pullable) model and what ``/api/show`` says about it."""

    name: str
    capabilities: list[str] = field(default_factory=lambda: ["completion"])
    family: str = ""
    parameter_size: str = "8B"
    quantization_level: str = "Q4_K_M"
    size: int = 5_000_000_000
    context_length: int = 32768
    embedding_length: int = 64

    def __post_init__(self) -> None:
        self.name = normalize_name(self.name)
        if not self.family:
            base = self.name.rsplit("/", 1)[-1].split(":")[0]
            self.family = re.sub(r"[^a-z0-9]", "", base.split("-")[0].lower()) or "fake"

    @classmethod
    def parse(cls, spec: str) -> FakeModel:
        """``"name"`` or ``"name=cap,cap"`` (the CLI's ``--models`` form)."""
        name, _, caps = spec.partition("=")
        capabilities = [c.strip() for c in caps.split(",") if c.strip()] or ["completion"]
        return cls(name, capabilities)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": self.quantization_level,
        }

    def tag(self) -> dict[str, Any]:
        """An entry of ``/api/tags``."""
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": FIXED_TIME,
            "size": self.size,
            "digest": self.digest,
            "details": self.details(),
        }

    def show(self) -> dict[str, Any]:
        """The body of ``/api/show``."""
        return {
            "license": "",
            "modelfile": f"# Modelfile generated by the fake Ollama\nFROM {self.name}\n",
            "parameters": "temperature 0.7",
            "template": "{{ .Prompt }}",
            "details": self.details(),
            "model_info": {
                "general.architecture": self.family,
                "general.parameter_count": 8_000_000_000,
                f"{self.family}.context_length": self.context_length,
                f"{self.family}.embedding_length": self.embedding_length,
            },
            "capabilities": list(self.capabilities),
            "modified_at": FIXED_TIME,
        }

    def pull_progress(self, steps: int = 4) -> list[dict[str, Any]]:
        """The NDJSON lines of a successful ``/api/pull``."""
        digest = f"sha256:{self.digest}"
        layer = [
            {
                "status": f"pulling {self.digest[:12]}",
                "digest": digest,
                "total": self.size,
                "completed": self.size * i // steps,
            }
            for i in range(steps + 1)
        ]
        tail = ["verifying sha256 digest", "writing manifest", "success"]
        return [{"status": "pulling manifest"}, *layer, *({"status": s} for s in tail)]


DEFAULT_MODELS: tuple[FakeModel, ...] = (
    FakeModel("qwen3-vl:8b", ["completion", "tools", "vision", "thinking"]),
    FakeModel("nomic-embed-text:latest", ["embedding"], parameter_size="137M", size=274_000_000),
)
DEFAULT_PULLABLE: tuple[FakeModel, ...] = (
    *DEFAULT_MODELS,
    FakeModel("qwen3:8b", ["completion", "tools", "thinking"]),
    FakeModel("gemma3:4b", ["completion", "vision"], parameter_size="4B"),
    FakeModel("llama3.2:3b", ["completion", "tools"], parameter_size="3B"),
)


def fake_embedding(text: str, dims: int = 64) -> list[float]:
    """Deterministic, L2-normalised vector: hashed words and trigrams, so shared words overlap."""
    vec = [0.0] * dims
    words = re.findall(r"\w+", text.lower())
    grams = [w[i : i + 3] for w in words for i in range(max(1, len(w) - 2))]
    for feature, weight in [(w, 2.0) for w in words] + [(g, 1.0) for g in grams] or [(text, 1.0)]:
        h = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        vec[int.from_bytes(h[:4], "little") % dims] += weight if h[4] & 1 else -weight
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0.0:
        vec[0], norm = 1.0, 1.0
    return [v / norm for v in vec]


def schema_instance(schema: Any, root: dict[str, Any] | None = None) -> Any:
    """A minimal value matching a JSON schema (all properties filled, arrays empty)."""
    if not isinstance(schema, dict):
        return {}
    root = root or schema
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return schema_instance(target, root)
    for key in ("const", "default"):
        if key in schema:
            return schema[key]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [s for s in schema.get(key, []) if s.get("type") != "null"]
        if options:
            return schema_instance(options[0], root)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: schema_instance(v, root) for k, v in props.items()}
    if kind == "array":
        return [schema_instance(schema.get("items", {}), root)] * schema.get("minItems", 0)
    simple = {"string": "fake", "integer": 0, "number": 0.0, "boolean": False}
    return simple.get(kind, schema.get("minimum"))


def default_reply(body: dict[str, Any]) -> Reply:
    """What the fake answers when nothing is scripted."""
    fmt = body.get("format")
    if fmt:
        return Reply(data=schema_instance(fmt) if isinstance(fmt, dict) else {})
    users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    last = users[-1] if users else body
    text = str(last.get("content") or last.get("prompt") or "").strip()
    n_images = len(last.get("images") or [])
    seen = f" ({n_images} image(s) received)" if n_images else ""
    return Reply(content=f"[fake {body.get('model', '?')}] You said: {text[:200]}{seen}")


def load_script(path: str | Path) -> list[Reply]:
    """Read a script file (see the module docstring) into replies."""
    path = Path(path)
    raw = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        items = json.loads(raw)
    else:
        import yaml

        items = yaml.safe_load(raw)
    if not isinstance(items, list):
        raise ValueError(f"{path}: a script is a list of replies")
    return [Reply.coerce(item) for item in items]
