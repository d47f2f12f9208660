"""A1111 prompts → the embeddings a diffusers SD1.x / SDXL pipeline call takes.

:func:`encode_prompts` returns ``prompt_embeds`` and ``negative_prompt_embeds`` (and for
SDXL ``pooled_prompt_embeds``, ``negative_pooled_prompt_embeds``) for one prompt; they
replace ``prompt``/``negative_prompt`` in a txt2img, img2img or inpaint call, which
still repeats them for ``num_images_per_prompt``.

What it does, as A1111 (``modules/sd_hijack_clip.py``, ``sd_emphasis.py``) does:

* each 75-token chunk (:mod:`~tools.engines.diffusers.prompts.a1111`) is encoded on its
  own as ``BOS + 75 + EOS`` and the chunks are concatenated: ``77·k`` positions;
* the positive and negative prompts get the same ``k``: the shorter one is padded with
  encodings of the empty chunk (A1111's ``pad_cond_uncond``; its default instead runs
  the UNet on cond and uncond separately, which diffusers' batched CFG can't);
* emphasis multiplies each position of the encoder *output* by its weight, then rescales
  the chunk so its mean equals the mean before ("Original" emphasis);
* clip skip ``N`` (A1111 numbering, 1 = last layer): SD1.x takes ``hidden_states[-N]``
  through the final layer norm. SDXL always takes the penultimate layer of both encoders
  without the norm (what A1111 and diffusers do by default); ``clip_skip`` is ignored
  there unless ``sdxl_clip_l_skip`` (A1111's option of that name) applies it to CLIP-L;
* SDXL's pooled embedding comes from CLIP-G's first chunk, at its first EOS; an empty
  negative prompt gives zeros when the pipeline's ``force_zeros_for_empty_prompt`` is set
  (SDXL base; A1111 does the same).

A prompt with no syntax that fits in 75 tokens gives exactly what diffusers'
``encode_prompt`` gives (tests check bit equality), so plain prompts behave as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tools.core.errors import InvalidRequest
from tools.engines.diffusers.prompts.a1111 import (
    COMMA_BACKTRACK,
    EmbeddingTokens,
    PromptChunk,
    empty_chunk,
    tokenize_prompt,
)
from tools.engines.diffusers.prompts.textual_inversion import (
    CLIP_G,
    CLIP_L,
    SINGLE,
    EmbeddingRegistry,
    EncoderSlot,
)


@dataclass(frozen=True)
class _Encoded:
    hidden: Any  # (1, 77·k, C)
    pooled: Any | None  # (1, P) for CLIP-G, else None


def encoder_slots(pipe: Any) -> list[EncoderSlot]:
    """The pipeline's text encoders in diffusers' order (SDXL: CLIP-L then CLIP-G)."""
    if "text_encoder_2" not in getattr(pipe, "components", {}):
        return [EncoderSlot(pipe.tokenizer, pipe.text_encoder, SINGLE)]
    slots = []
    if pipe.text_encoder is not None:
        slots.append(EncoderSlot(pipe.tokenizer, pipe.text_encoder, CLIP_L))
    slots.append(EncoderSlot(pipe.tokenizer_2, pipe.text_encoder_2, CLIP_G))
    return slots


def is_sdxl(pipe: Any) -> bool:
    return "text_encoder_2" in getattr(pipe, "components", {})


@dataclass(frozen=True)
class EncodedPrompts:
    """What :func:`encode` made: the pipeline's keyword arguments and, for the infotext,
    the chunk count, whether one side was padded with empty chunks (A1111 reproduces that
    only with ``Pad conds: True``) and the embedding names used."""

    kwargs: dict[str, Any]
    chunks: int
    padded: bool
    embeddings: list[str]


def encode(
    pipe: Any,
    prompt: str,
    negative_prompt: str = "",
    *,
    clip_skip: int = 1,
    embeddings: EmbeddingRegistry | None = None,
    comma_backtrack: int = COMMA_BACKTRACK,
    sdxl_clip_l_skip: bool = False,
    with_negative: bool = True,
) -> EncodedPrompts:
    """Encode ``prompt`` and ``negative_prompt`` for ``pipe`` (see the module doc).

    ``with_negative=False`` (CFG scale ≤ 1: diffusers ignores the negative) skips it.
    Raises :class:`~tools.core.errors.InvalidRequest` for a clip skip the model can't take.
    """
    import torch

    slots = encoder_slots(pipe)
    _check_clip_skip(slots, clip_skip, sdxl_clip_l_skip)
    zero_negative = with_negative and _zero_negative(pipe, negative_prompt)
    texts = [prompt] + ([negative_prompt] if with_negative and not zero_negative else [])
    known = embeddings.prepare(slots, texts) if embeddings else [[] for _ in slots]
    chunked = [_chunk(slot, texts, emb, comma_backtrack) for slot, emb in zip(
        slots, known, strict=True)]
    count = max(len(chunks) for per_slot in chunked for chunks in per_slot)
    device = pipe._execution_device  # a walk over every module: read it once
    encoded: list[list[_Encoded]] = []
    with torch.no_grad():
        for slot, per_text in zip(slots, chunked, strict=True):
            layer = _layer(slot, clip_skip, sdxl_clip_l_skip)
            encoded.append([_encode(slot, _pad(slot, c, count), layer, device)
                            for c in per_text])
    # A zeroed SDXL negative is never "padded": longer zeros equal A1111's separate pass.
    padded = len(chunked[0]) == 2 and len(chunked[0][0]) != len(chunked[0][1])
    return EncodedPrompts(_kwargs(slots, encoded, device, with_negative, zero_negative),
                          count, padded, [e.name for e in known[0]])


def encode_prompts(pipe: Any, prompt: str, negative_prompt: str = "", **options: Any
                   ) -> dict[str, Any]:
    """Just the keyword arguments for ``pipe(...)`` (:func:`encode`'s ``kwargs``)."""
    return encode(pipe, prompt, negative_prompt, **options).kwargs


def _check_clip_skip(slots: Sequence[EncoderSlot], clip_skip: int, sdxl_clip_l_skip: bool
                     ) -> None:
    """Clip skip must leave a layer to read, where it applies (not SDXL by default)."""
    used = [s for s in slots if s.part == SINGLE or (s.part == CLIP_L and sdxl_clip_l_skip)]
    if not used:
        return
    layers = min(int(s.text_encoder.config.num_hidden_layers) for s in used)
    if not 1 <= clip_skip <= layers:
        raise InvalidRequest.of("prompt_clip_skip_range", clip_skip=clip_skip, layers=layers)


def _zero_negative(pipe: Any, negative_prompt: str) -> bool:
    config = getattr(pipe, "config", {})
    return is_sdxl(pipe) and not negative_prompt and bool(
        config.get("force_zeros_for_empty_prompt", False))


def _chunk(slot: EncoderSlot, texts: list[str], known: list[EmbeddingTokens],
           comma_backtrack: int) -> list[list[PromptChunk]]:
    return [tokenize_prompt(t, slot.tokenizer, embeddings=known,
                            comma_backtrack=comma_backtrack).chunks for t in texts]


def _pad(slot: EncoderSlot, chunks: list[PromptChunk], count: int) -> list[PromptChunk]:
    return chunks + [empty_chunk(slot.tokenizer)] * (count - len(chunks))


def _layer(slot: EncoderSlot, clip_skip: int, sdxl_clip_l_skip: bool) -> tuple[int, bool]:
    """(index into ``hidden_states``, apply the final layer norm) for this encoder."""
    if slot.part == SINGLE:
        return -clip_skip, clip_skip > 1
    if slot.part == CLIP_L and sdxl_clip_l_skip:
        return -clip_skip, False
    return -2, False


def _token_ids(slot: EncoderSlot, chunks: list[PromptChunk]) -> Any:
    """Chunk ids as a tensor; after the first EOS, the tokenizer's pad id (SDXL's CLIP-G
    pads with ``!``, as diffusers' tokenizer and A1111 do)."""
    import torch

    tok = slot.tokenizer
    ids = torch.tensor([c.tokens for c in chunks], dtype=torch.long)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if pad != tok.eos_token_id:
        for row in ids:
            first_eos = int((row == tok.eos_token_id).nonzero()[0])
            row[first_eos + 1:] = pad
    return ids


def _attention_mask(slot: EncoderSlot, ids: Any) -> Any:
    """The mask diffusers passes for encoders configured with ``use_attention_mask``."""
    if not getattr(slot.text_encoder.config, "use_attention_mask", False):
        return None
    first_eos = (ids == slot.tokenizer.eos_token_id).int().argmax(dim=1, keepdim=True)
    positions = ids.new_tensor(range(ids.shape[1])).unsqueeze(0)
    return (positions <= first_eos).long()


def _encode(slot: EncoderSlot, chunks: list[PromptChunk], layer: tuple[int, bool],
            device: Any) -> _Encoded:
    """All chunks through one text encoder: hidden states (weighted) and pooled."""
    import torch

    te = slot.text_encoder
    ids = _token_ids(slot, chunks).to(device)
    index, norm = layer
    need_hidden = slot.part != SINGLE or index != -1  # SD1.x clip skip 1: last_hidden_state
    out = te(ids, attention_mask=_attention_mask(slot, ids), output_hidden_states=need_hidden)
    hidden = out.hidden_states[index] if need_hidden else out[0]
    if norm:
        hidden = _final_layer_norm(te)(hidden)
    weights = torch.tensor([c.weights for c in chunks], device=hidden.device)
    hidden = apply_emphasis(hidden, weights)
    pooled = _pooled(slot, out, ids) if slot.part == CLIP_G else None
    return _Encoded(hidden.reshape(1, -1, hidden.shape[-1]), pooled)


def _final_layer_norm(te: Any) -> Any:
    # transformers 5 dropped CLIPTextModel.text_model; 4.x and CLIPTextModelWithProjection
    # keep the norm one level down.
    return getattr(te, "text_model", te).final_layer_norm


def _pooled(slot: EncoderSlot, out: Any, ids: Any) -> Any:
    """CLIP-G's projected state at the first chunk's first EOS.

    Computed here rather than read from ``text_embeds``: configs with the legacy
    ``eos_token_id == 2`` make transformers pick the largest id, which is a registered
    embedding's token rather than EOS once one is in the prompt.
    """
    first = ids[0]
    eos = int((first == slot.tokenizer.eos_token_id).nonzero()[0])
    return slot.text_encoder.text_projection(out.last_hidden_state[0:1, eos])


def apply_emphasis(hidden: Any, weights: Any) -> Any:
    """A1111's "Original" emphasis, per chunk: ``z * w`` rescaled to z's original mean."""
    if bool((weights == 1).all()):
        return hidden
    z = hidden.float()
    original = z.mean(dim=(1, 2), keepdim=True)
    z = z * weights.float().unsqueeze(-1)
    z = z * (original / z.mean(dim=(1, 2), keepdim=True))
    return z.to(hidden.dtype)


def _kwargs(slots: Sequence[EncoderSlot], encoded: list[list[_Encoded]], device: Any,
            with_negative: bool, zero_negative: bool) -> dict[str, Any]:
    """Concatenate encoders along channels; name the tensors as the pipeline wants."""
    import torch

    dtype = slots[-1].text_encoder.dtype  # diffusers: text_encoder (SD) / text_encoder_2

    def hidden(i: int) -> Any:
        return torch.cat([per_slot[i].hidden for per_slot in encoded], dim=-1).to(
            dtype=dtype, device=device)

    out = {"prompt_embeds": hidden(0)}
    pooled = encoded[-1][0].pooled
    if pooled is not None:
        out["pooled_prompt_embeds"] = pooled.to(dtype=dtype, device=device)
    if not with_negative:
        return out
    if zero_negative:
        out["negative_prompt_embeds"] = torch.zeros_like(out["prompt_embeds"])
        out["negative_pooled_prompt_embeds"] = torch.zeros_like(out["pooled_prompt_embeds"])
        return out
    out["negative_prompt_embeds"] = hidden(1)
    negative_pooled = encoded[-1][1].pooled
    if negative_pooled is not None:
        out["negative_pooled_prompt_embeds"] = negative_pooled.to(dtype=dtype, device=device)
    return out
