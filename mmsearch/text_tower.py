"""Encode short texts without running the padding: CLIP's causal text tower stops at end-of-text.

open_clip pads every text to the context length (77 positions for CLIP) and runs them all. In a
causal text transformer no position attends to later ones, so the features at the end-of-text
token (which CLIP pools) do not depend on the padding after it: cutting the sequence right after
the last end-of-text token of the batch gives the same vectors at a fraction of the cost. Towers
that attend both ways, or pool otherwise, are encoded in full.
"""

from __future__ import annotations


def can_truncate(model) -> bool:
    """Whether ``model``'s text tower is causal and pools at the end-of-text token."""
    import open_clip

    return (
        isinstance(model, open_clip.CLIP)
        and getattr(model, "attn_mask", None) is not None
        and getattr(model, "text_pool_type", None) in ("argmax", "eos")
    )


def encode_text_truncated(model, tokens):
    """``model.encode_text(tokens, normalize=True)``, cut after the last end-of-text token."""
    import torch.nn.functional as F
    from open_clip.transformer import text_global_pool

    if model.text_pool_type == "argmax":
        ends = tokens.argmax(dim=-1)
    else:
        ends = (tokens == model.text_eos_id).int().argmax(dim=-1)
    length = int(ends.max()) + 1
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length].to(cast_dtype))
    x = model.ln_final(x)
    x = text_global_pool(
        x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None)
    )
    if model.text_projection is not None:
        if hasattr(model.text_projection, "weight"):  # nn.Linear
            x = model.text_projection(x)
        else:
            x = x @ model.text_projection
    return F.normalize(x.float(), dim=-1)  # in fp32 whatever the tower runs in: unit length


def cast_text_tower(model, dtype) -> None:
    """Store a causal CLIP's text tower (embeddings, transformer, final norm, projection) in
    ``dtype``; the image tower is left as it is. :func:`encode_text_truncated` then runs in it."""
    for module in (model.token_embedding, model.transformer, model.ln_final):
        module.to(dtype)
    model.positional_embedding.data = model.positional_embedding.data.to(dtype)
    if model.text_projection is not None:
        if hasattr(model.text_projection, "weight"):
            model.text_projection.to(dtype)
        else:
            model.text_projection.data = model.text_projection.data.to(dtype)
