"""Prompts the way AUTOMATIC1111 users write them, for the diffusers engine.

* :mod:`.a1111` — A1111's 75-token chunker (BREAK, comma backtrack, embeddings kept whole)
  and its token counter, on the attention parser of :mod:`tools.infotext.prompt_syntax`;
* :mod:`.textual_inversion` — embeddings from an A1111 ``embeddings/`` folder, registered
  into the pipeline's tokenizer(s) and text encoder(s) by name, on first use;
* :mod:`.encoding` — ``prompt_embeds``/``negative_prompt_embeds`` (+ SDXL pooled) with
  A1111's emphasis and clip skip, bit-identical to diffusers for plain short prompts;
* :mod:`.counter` — token counts for the prompt card from a tokenizer found locally.
"""
