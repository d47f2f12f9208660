"""The CLIP text encoder(s) on OpenVINO, their torch copies released.

:func:`add_text_encoders` converts each text encoder of a pipeline (SD1.x: one; SDXL:
CLIP-L and CLIP-G) once into the IR cache and installs an
:class:`~tools.engines.diffusers.openvino.runtime.OvRoute` on its ``forward``. Callers
(:mod:`~tools.engines.diffusers.prompts.encoding`, diffusers' own ``encode_prompt``) see
the usual transformers output: ``last_hidden_state``, ``hidden_states`` (for clip skip),
``pooler_output`` or, for CLIP-G, ``text_embeds``.

The token lookup stays in torch and OpenVINO takes the looked-up vectors
(``inputs_embeds``): textual-inversion embeddings (new rows in the token embedding, see
:mod:`~tools.engines.diffusers.prompts.textual_inversion`) then need no torch fallback,
and the table (SD1.5: 49408×768, 152 MB in f32) stays a memory map of the model's file
of which a prompt touches a few pages, instead of a compiled copy. The final layer norm
and CLIP-G's projection (small) stay in torch too: clip skip and the pooled embedding
use them. Everything else is released (:class:`TorchWeights` with ``keep``) and comes
back, memory-mapped, when torch must run: a LoRA with a text-encoder part, an attention
mask, a failed route.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# What stays in torch when the text encoder is released (state-dict name prefixes, with
# and without CLIPTextModelWithProjection's ``text_model.``).
KEEP = ("embeddings.token_embedding.", "text_model.embeddings.token_embedding.",
        "final_layer_norm.", "text_model.final_layer_norm.", "text_projection.")
PARTS = ("text_encoder", "text_encoder_2")  # pipeline attributes, diffusers' order
_PASSED = {"input_ids", "output_hidden_states", "return_dict", "output_attentions"}


def _core(te: Any) -> Any:
    """The CLIP text transformer (``text_model`` inside CLIPTextModelWithProjection; the
    model itself for CLIPTextModel in transformers 5)."""
    return getattr(te, "text_model", te)


def positions(te: Any) -> int:
    return int(te.config.max_position_embeddings)


def encoder_module(te: Any) -> Any:
    """A traceable text encoder: token vectors (B, 77, C) in; out one stack of
    (embeddings, every layer's output, final-normed last state): (L + 2, B, 77, C)."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.core = _core(te)

        def forward(self, embeds: Any) -> Any:
            core = self.core
            hidden = core.embeddings(inputs_embeds=embeds)
            size = embeds.shape[1]
            # CLIP's causal mask, additive (transformers builds the same one)
            mask = torch.full((size, size), torch.finfo(embeds.dtype).min).triu(1)[None, None]
            states = [hidden]
            for layer in core.encoder.layers:
                hidden = layer(hidden, mask)
                hidden = hidden[0] if isinstance(hidden, tuple) else hidden
                states.append(hidden)
            states.append(core.final_layer_norm(hidden))
            return torch.stack(states)

    return Wrapped().eval()


def encoder_inputs(te: Any) -> tuple[list[tuple[list[int], Any]], tuple[Any, ...]]:
    """(OpenVINO input specs, example tensors): a dynamic batch of 77-position chunks."""
    import torch

    width = int(te.config.hidden_size)
    return [([-1, positions(te), width], "f32")], (torch.randn(2, positions(te), width),)


def accepts(te: Any) -> Callable[[tuple[Any, ...], dict[str, Any]], list[Any] | None]:
    """The looked-up token vectors for a plain call; None (torch) for anything else: an
    attention mask, position ids, LoRA adapters in the module, another length."""

    def feed(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | None:
        import torch

        if len(args) > 1 or getattr(te, "peft_config", None):
            return None
        if any(v is not None and v is not False and k not in _PASSED
               for k, v in kwargs.items()) or kwargs.get("output_attentions"):
            return None
        ids = args[0] if args else kwargs.get("input_ids")
        if ids is None or ids.device.type != "cpu" or ids.ndim != 2 or (
                ids.shape[1] != positions(te)):
            return None
        with torch.no_grad():
            vectors = te.get_input_embeddings()(ids)
        return [vectors.detach().float().contiguous().numpy()]

    return feed


def wrap(te: Any) -> Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]:
    """OpenVINO's stack → the output transformers gives for this encoder class."""

    def out(stack: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling
        from transformers.models.clip.modeling_clip import CLIPTextModelOutput

        states = torch.from_numpy(stack)
        ids = args[0] if args else kwargs["input_ids"]
        last = states[-1]
        want = kwargs.get("output_hidden_states")
        if want is None:
            want = bool(getattr(te.config, "output_hidden_states", False))
        hidden = tuple(states[:-1].unbind(0)) if want else None
        pooled = last[torch.arange(last.shape[0]), _eos_positions(te, ids)]
        result: Any
        if hasattr(te, "text_projection"):
            with torch.no_grad():
                projected = te.text_projection(pooled)
            result = CLIPTextModelOutput(text_embeds=projected, last_hidden_state=last,
                                         hidden_states=hidden)
        else:
            result = BaseModelOutputWithPooling(last_hidden_state=last, pooler_output=pooled,
                                                hidden_states=hidden)
        return result if kwargs.get("return_dict", True) is not False else result.to_tuple()

    return out


def _eos_positions(te: Any, ids: Any) -> Any:
    """Where transformers pools: the first EOS, or (legacy configs, ``eos_token_id``
    2) the largest id."""
    import torch

    eos = getattr(_core(te), "eos_token_id", te.config.eos_token_id)
    if eos == 2:
        return ids.to(torch.int).argmax(dim=-1)
    return (ids.to(torch.int) == eos).int().argmax(dim=-1)


def weight_files(model_dir: Any, part: str) -> list[tuple[Any, str]]:
    """(file, prefix) pairs that may hold the encoder's weights as loaded: the folder's
    own safetensors, with transformers 4's ``text_model.`` prefix or without."""
    if model_dir is None:
        return []
    path = model_dir / part / "model.safetensors"
    return [(path, ""), (path, "text_model.")]
