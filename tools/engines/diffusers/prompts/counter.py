"""Token counts for the prompt card, from a tokenizer that is already on this machine.

CLIP's vocabulary comes with the model files, so :class:`TokenCounter` never downloads:

1. the resident pipeline's tokenizer (a private copy: the engine registers embeddings
   into its own while a job runs) — every SD1.x/SDXL model shares CLIP's vocabulary;
2. else only the tokenizer of the configured model, read from its local files: a
   diffusers folder's ``tokenizer/``, the model's Hugging Face cache snapshot, or for a
   single-file checkpoint the cached config repo diffusers builds it with;
3. else nothing: the card then shows no count rather than a wrong one.

Counts follow A1111's counter (:func:`~tools.engines.diffusers.prompts.a1111.count_tokens`)
with the embeddings the text uses counted as their vectors, and ``<lora:…>`` tags left
out (the engine takes them out of the prompt, as A1111 does).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.core.errors import EgakiError
from tools.core.settings import Settings
from tools.engines.diffusers.lora import extract_lora_tags
from tools.engines.diffusers.prompts.a1111 import COMMA_BACKTRACK, TokenCount, count_tokens
from tools.engines.diffusers.prompts.textual_inversion import EmbeddingRegistry

log = logging.getLogger(__name__)


class TokenCounter:
    """A1111 token counts with the best local tokenizer (see the module doc).

    ``resident()`` returns the loaded pipeline (or None); it is read on every count, so a
    model loaded later is used from then on.
    """

    def __init__(self, settings: Settings, resident: Callable[[], Any] | None = None,
                 embeddings: EmbeddingRegistry | None = None,
                 comma_backtrack: int = COMMA_BACKTRACK) -> None:
        self.settings = settings
        self.resident = resident or (lambda: None)
        self.embeddings = embeddings
        self.comma_backtrack = comma_backtrack
        self._copies: dict[int, Any] = {}  # id(resident pipe) → its tokenizer's copy
        self._from_disk: Any | None = None
        self._disk_tried = False
        self._lock = threading.Lock()

    def count(self, text: str) -> TokenCount | None:
        """A1111's count for ``text``, or None when no tokenizer is available here."""
        text = extract_lora_tags(text)[0]
        with self._lock:
            tokenizer = self._tokenizer()
            if tokenizer is None:
                return None
            known = (self.embeddings.counting_tokens(tokenizer, [text])
                     if self.embeddings is not None else [])
            return count_tokens(text, tokenizer, embeddings=known,
                                comma_backtrack=self.comma_backtrack)

    def _tokenizer(self) -> Any | None:
        pipe = self.resident()
        if pipe is not None and getattr(pipe, "tokenizer", None) is not None:
            if id(pipe) not in self._copies:
                try:
                    self._copies = {id(pipe): copy.deepcopy(pipe.tokenizer)}
                except Exception as err:  # e.g. a job registering embeddings right now
                    log.info("tokenizer copy failed (%s); no count this time", err)
                    return None
            return self._copies[id(pipe)]
        if not self._disk_tried:
            self._disk_tried = True
            self._from_disk = local_tokenizer(self.settings)
        return self._from_disk


def tokenizer_folder(settings: Settings, spec: str | None = None) -> Path | None:
    """The ``tokenizer/`` folder of the model ``spec`` (default: the configured one) on
    this machine, or None. Reads local files and the Hugging Face cache only."""
    from tools.engines.diffusers.hub import CONFIG_ALLOW, cached_snapshot
    from tools.engines.diffusers.models import read_checkpoint_header, resolve_model

    try:
        source = resolve_model(spec or settings.image_model, settings)
        if source.kind == "single_file" and source.path is not None:
            from diffusers.loaders.single_file_utils import fetch_diffusers_config

            header = read_checkpoint_header(source.path)
            repo = str(fetch_diffusers_config(header)["pretrained_model_name_or_path"])
            root = cached_snapshot(repo, settings, CONFIG_ALLOW)
        elif source.kind == "hub":
            root = cached_snapshot(source.ref, settings, ["tokenizer/*"])
        else:
            root = source.path
    except (EgakiError, OSError, ValueError, KeyError) as err:
        log.info("no local tokenizer for token counts: %s", err)
        return None
    folder = root / "tokenizer" if root is not None else None
    if folder is None or not any((folder / f).is_file() for f in ("vocab.json", "tokenizer.json")):
        return None
    return folder


def local_tokenizer(settings: Settings) -> Any | None:
    """The configured model's CLIP tokenizer from local files, or None (never downloads)."""
    folder = tokenizer_folder(settings)
    if folder is None:
        return None
    try:
        from transformers import CLIPTokenizer

        return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as err:  # a damaged tokenizer only costs the card its count
        log.info("tokenizer in %s unusable for token counts: %s", folder, err)
        return None
