"""Textual-inversion embeddings from an A1111 ``embeddings/`` folder, loaded on demand.

The folder is ``Settings.embeddings_dir`` (``EGAKI_EMBEDDINGS_DIR``, e.g. an A1111
``stable-diffusion-webui/embeddings``). Layout and formats follow A1111
(``modules/textual_inversion/textual_inversion.py``):

* the folder is scanned recursively; an embedding's name is its file stem
  (``embeddings/neg/EasyNegative.safetensors`` → ``EasyNegative``); empty files and other
  suffixes are ignored (A1111's image-embedded embeddings, ``.png``/``.webp``, are not
  supported);
* ``.pt``/``.bin`` (read with ``torch.load(weights_only=True)``) and ``.safetensors``;
* SD1.x files hold one tensor of ``n`` vectors: ``string_to_param["*"]`` (A1111 training
  output) or a single key (``emb_params`` in safetensors, or diffusers' ``{token: tensor}``);
* SDXL files hold a pair, ``clip_l`` (n×768, first text encoder) and ``clip_g`` (n×1280).

A file that does not fit the loaded model (an SD1.5 embedding on SDXL, a wrong width) is
skipped with a warning, as A1111 skips it: its name then stays plain words, as does any
name without a file.

:meth:`EmbeddingRegistry.prepare` loads only the names a prompt uses and registers each
vector as a new token (``<ti:NAME:i>``) in the pipeline's tokenizer(s), growing the text
encoder's token embedding when needed and writing the vectors into its rows. It is
idempotent: the tokenizer itself records what is registered, so calling it again (or
with a new registry on the same pipeline) adds nothing; a changed file rewrites its rows.

Why not diffusers' ``load_textual_inversion``: it raises when a token is already
registered (not idempotent), reads A1111 ``string_to_param`` files but takes
``emb_params``/SDXL files only as bare tensors passed one encoder at a time, and registers
the *name* as an added token, which then splits any word containing it (``cat`` inside
``concatenate``). Here names are matched token by token, as A1111 does
(:mod:`tools.engines.diffusers.prompts.a1111`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.engines.diffusers.prompts.a1111 import (
    EmbeddingTokens,
    name_token_ids,
    used_embedding_names,
)

log = logging.getLogger(__name__)

SUFFIXES = (".pt", ".bin", ".safetensors")
SINGLE, CLIP_L, CLIP_G = "single", "clip_l", "clip_g"  # which vectors a text encoder takes


@dataclass(frozen=True)
class EncoderSlot:
    """One text encoder of a pipeline and which part of an embedding file it takes."""

    tokenizer: Any
    text_encoder: Any
    part: str  # SINGLE (SD1.x), CLIP_L or CLIP_G (SDXL)


class EmbeddingError(ValueError):
    """A file that is not a textual-inversion embedding. Internal: such files are skipped
    with a log line, never reported as a failed request (A1111 skips them too)."""


# --- files -----------------------------------------------------------------------------


def scan_embeddings(folder: Path | None) -> dict[str, Path]:
    """Name → file for every embedding under ``folder`` (recursive, sorted paths; the
    first of two files with the same name wins)."""
    found: dict[str, Path] = {}
    if folder is None or not Path(folder).is_dir():
        return found
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        for fn in sorted(files):
            path = Path(root) / fn
            if path.suffix.lower() not in SUFFIXES or path.stat().st_size == 0:
                continue
            if path.stem in found:
                log.warning("embedding %s: %s ignored, %s already has that name",
                            path.stem, path, found[path.stem])
                continue
            found[path.stem] = path
    return found


def _read(path: Path) -> Any:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    import torch

    return torch.load(str(path), map_location="cpu", weights_only=True)


def _as_matrix(tensor: Any, path: Path) -> Any:
    import torch

    if not isinstance(tensor, torch.Tensor) or tensor.ndim not in (1, 2):
        raise EmbeddingError(f"{path.name}: expected a tensor of vectors")
    return tensor.detach().float().reshape(-1, tensor.shape[-1])


def load_vectors(path: Path) -> dict[str, Any]:
    """``{SINGLE: n×d}`` or ``{CLIP_L: n×768, CLIP_G: n×1280}`` float32 CPU tensors."""
    try:
        data = _read(path)
    except Exception as err:
        raise EmbeddingError(f"{path.name}: can't be read ({type(err).__name__}: {err})") from err
    if not isinstance(data, dict):
        return {SINGLE: _as_matrix(data, path)}
    if "string_to_param" in data:
        params: Any = data["string_to_param"]
        params = getattr(params, "_parameters", params)  # as A1111: old torch pickles
        if len(params) != 1:
            raise EmbeddingError(f"{path.name}: has {len(params)} terms, expected one")
        return {SINGLE: _as_matrix(next(iter(params.values())), path)}
    if CLIP_L in data and CLIP_G in data:
        pair = {k: _as_matrix(data[k], path) for k in (CLIP_L, CLIP_G)}
        if pair[CLIP_L].shape[0] != pair[CLIP_G].shape[0]:
            raise EmbeddingError(f"{path.name}: clip_l and clip_g have different lengths")
        return pair
    if len(data) == 1:
        return {SINGLE: _as_matrix(next(iter(data.values())), path)}
    raise EmbeddingError(f"{path.name}: not a textual-inversion embedding "
                         f"(keys: {', '.join(map(str, list(data)[:5]))})")


def short_hash(path: Path) -> str:
    """A1111's embedding short hash (first 12 hex of the file's SHA-256), for the
    ``TI hashes`` infotext entry."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


# --- registration ------------------------------------------------------------------------


def _token_names(name: str, count: int) -> list[str]:
    return [f"<ti:{name}:{i}>" for i in range(count)]


def register_vectors(tokenizer: Any, text_encoder: Any, name: str, vectors: Any
                     ) -> tuple[int, ...]:
    """Ids holding ``vectors`` (n×d) in ``text_encoder``'s token embedding; idempotent."""
    import torch
    from tokenizers import AddedToken

    tokens = _token_names(name, int(vectors.shape[0]))
    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    if missing:
        tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing])
    ids = tuple(int(i) for i in tokenizer.convert_tokens_to_ids(tokens))
    rows = text_encoder.get_input_embeddings().weight.shape[0]
    if max(ids) >= rows:
        text_encoder.resize_token_embeddings(max(len(tokenizer), max(ids) + 1),
                                             mean_resizing=False)
    weight = text_encoder.get_input_embeddings().weight
    index = torch.tensor(ids, device=weight.device)
    new = vectors.to(device=weight.device, dtype=weight.dtype)
    if not torch.equal(weight.data.index_select(0, index), new):
        with torch.no_grad():
            weight.data[index] = new
    return ids


def _fits(vectors: dict[str, Any], slot: EncoderSlot) -> str:
    """"" when the file's vectors fit ``slot``, else why not."""
    if slot.part not in vectors:
        kind = "an SDXL pair" if SINGLE not in vectors else "a single-encoder (SD1.x) file"
        return f"{kind} does not fit this model"
    width = int(slot.text_encoder.get_input_embeddings().weight.shape[1])
    got = int(vectors[slot.part].shape[1])
    return "" if got == width else f"vectors are {got} wide, the text encoder takes {width}"


class EmbeddingRegistry:
    """The embeddings of one folder; loads and registers them as prompts use them."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._vectors: dict[tuple[str, int, int], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def files(self) -> dict[str, Path]:
        """Name → file, rescanned on each call (cheap; new files show up at once)."""
        return scan_embeddings(self.folder)

    def vectors(self, path: Path) -> dict[str, Any]:
        """The file's vectors, cached until the file changes."""
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        if key not in self._vectors:
            self._vectors = {k: v for k, v in self._vectors.items() if k[0] != str(path)}
            self._vectors[key] = load_vectors(path)
        return self._vectors[key]

    def prepare(self, slots: Sequence[EncoderSlot], texts: Iterable[str]
                ) -> list[list[EmbeddingTokens]]:
        """Register the embeddings ``texts`` use; per slot, what the chunker needs."""
        files = self.files()
        texts = list(texts)
        if not files or not slots:
            return [[] for _ in slots]
        with self._lock:
            names = self._used(files, slots[0].tokenizer, texts)
            usable = {n: v for n in names if (v := self._usable(n, files[n], slots))}
            return [self._register(slot, usable) for slot in slots]

    @staticmethod
    def _used(files: dict[str, Path], tokenizer: Any, texts: list[str]) -> list[str]:
        used: dict[str, None] = {}
        for text in texts:
            used.update(dict.fromkeys(used_embedding_names(text, files, tokenizer)))
        return list(used)

    def _usable(self, name: str, path: Path, slots: Sequence[EncoderSlot]
                ) -> dict[str, Any] | None:
        try:
            vectors = self.vectors(path)
        except (EmbeddingError, OSError) as err:
            log.warning("embedding %s skipped: %s", name, err)
            return None
        why = next((w for s in slots if (w := _fits(vectors, s))), "")
        if why:
            log.warning("embedding %s skipped: %s", name, why)
            return None
        return vectors

    @staticmethod
    def _register(slot: EncoderSlot, usable: dict[str, dict[str, Any]]
                  ) -> list[EmbeddingTokens]:
        spelled = name_token_ids(slot.tokenizer, usable)
        out = []
        for name, vectors in usable.items():
            ids = register_vectors(slot.tokenizer, slot.text_encoder, name, vectors[slot.part])
            out.append(EmbeddingTokens(name, spelled[name], ids))
        return out

    def counting_tokens(self, tokenizer: Any, texts: Iterable[str]) -> list[EmbeddingTokens]:
        """What :func:`~tools.engines.diffusers.prompts.a1111.count_tokens` needs to count
        the embeddings ``texts`` use (their vector counts), registering nothing."""
        files = self.files()
        if not files:
            return []
        with self._lock:
            names = self._used(files, tokenizer, list(texts))
            spelled = name_token_ids(tokenizer, names)
            out = []
            for name in names:
                try:
                    vectors = next(iter(self.vectors(files[name]).values()))
                except (EmbeddingError, OSError):
                    continue
                out.append(EmbeddingTokens(name, spelled[name], (-1,) * int(vectors.shape[0])))
            return out

    def hashes(self, names: Iterable[str]) -> str:
        """A1111's ``TI hashes`` infotext value (``name: hash, …``) for ``names``."""
        files = self.files()
        parts = [f"{n.replace(':', '').replace(',', '')}: {short_hash(files[n])}"
                 for n in names if n in files]
        return ", ".join(parts)
