"""Load prompt templates and data files from this folder.

Templates are Markdown with ``{{name}}`` placeholders. Rendering fails loudly when a
placeholder has no value or a value has no placeholder, so a renamed variable can never
silently drop out of a system prompt. Data files are YAML.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
_PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


class PromptTemplateError(KeyError):
    """A template and the values given to it do not match."""


@cache
def _read(name: str) -> str:
    path = HERE / name
    if not path.is_file():
        raise PromptTemplateError(f"No prompt file {name!r} in {HERE}")
    return path.read_text(encoding="utf-8")


def placeholders(name: str) -> set[str]:
    """The variable names a template expects."""
    return set(_PLACEHOLDER.findall(_read(name)))


def render(name: str, **values: Any) -> str:
    """Fill template ``name`` (e.g. ``"system.md"``) with exactly the given values."""
    text = _read(name)
    wanted = placeholders(name)
    missing = wanted - values.keys()
    extra = values.keys() - wanted
    if missing or extra:
        raise PromptTemplateError(
            f"{name}: missing values for {sorted(missing)}; unexpected {sorted(extra)}"
        )
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


@cache
def load_yaml(name: str) -> Any:
    """Parsed YAML data file ``name`` (e.g. ``"negatives.yaml"``)."""
    return yaml.safe_load(_read(name))
