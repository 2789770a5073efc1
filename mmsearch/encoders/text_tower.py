"""Encode short texts without running the padding: CLIP's causal text tower stops at end-of-text.

open_clip pads every text to the context length (77 positions for CLIP) and runs them all. In a
causal text transformer no position attends to later ones, so the features at the end-of-text
token (which CLIP pools) do not depend on the padding after it: cutting the sequence right after
the last end-of-text token of the batch gives the same vectors at a fraction of the cost. Towers
that attend both ways, or pool otherwise, are encoded in full.

A text query needs only the text tower, so :func:`load_text_tower` builds the model on PyTorch's
meta device (no memory, no random initialisation) and gives only the text weights real storage,
memory-mapped from the checkpoint: a cold process encodes its first query without reading,
initialising or copying the image tower.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path


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


@dataclass(frozen=True)
class PlainTextTower:
    """The plain CLIP text tower, as tensors: what torch-free and int8 queries run.

    ``weights`` are named ``"{layer}.ln_1.weight"``, ``"{layer}.in_proj_weight"``,
    ``"{layer}.out_proj.weight"``, ``"{layer}.c_fc.weight"``, ``"{layer}.c_proj.weight"`` (and
    their biases), ``token_embedding``, ``positional_embedding``, ``ln_final.weight`` /
    ``.bias`` and ``text_projection`` (width x dim, applied as ``x @ text_projection``).
    """

    weights: dict
    layers: int
    heads: int
    eps: float
    activation: str  # "gelu" or "quick_gelu"


def plain_text_tower(model) -> PlainTextTower | None:
    """``model``'s text tower as a :class:`PlainTextTower`, or None when it is anything else:
    a plain tower is causal, pools at the end-of-text token by argmax, projects with a matrix,
    and its blocks are LayerNorm, multi-head attention and a GELU (or QuickGELU) MLP with
    nothing added (no layer scale, no extra norms)."""
    import open_clip
    import torch

    if not can_truncate(model) or model.text_pool_type != "argmax":
        return None
    if not isinstance(model.text_projection, torch.nn.Parameter):
        return None
    weights = {}
    blocks = model.transformer.resblocks
    for layer, block in enumerate(blocks):
        plain = (
            isinstance(block.attn, torch.nn.MultiheadAttention)
            and block.attn.in_proj_weight is not None
            and isinstance(block.ls_1, torch.nn.Identity)
            and isinstance(block.ls_2, torch.nn.Identity)
            and isinstance(getattr(block, "ln_attn", torch.nn.Identity()), torch.nn.Identity)
            and isinstance(block.mlp.gelu, torch.nn.GELU | open_clip.transformer.QuickGELU)
            and getattr(block.mlp.gelu, "approximate", "none") == "none"
            and list(dict(block.mlp.named_children())) == ["c_fc", "gelu", "c_proj"]
        )
        if not plain:
            return None
        p = f"{layer}."
        weights[p + "in_proj_weight"] = block.attn.in_proj_weight
        weights[p + "in_proj_bias"] = block.attn.in_proj_bias
        for name, module in (
            ("ln_1", block.ln_1),
            ("ln_2", block.ln_2),
            ("out_proj", block.attn.out_proj),
            ("c_fc", block.mlp.c_fc),
            ("c_proj", block.mlp.c_proj),
        ):
            weights[p + name + ".weight"] = module.weight
            weights[p + name + ".bias"] = module.bias
    weights["token_embedding"] = model.token_embedding.weight
    weights["positional_embedding"] = model.positional_embedding
    weights["ln_final.weight"] = model.ln_final.weight
    weights["ln_final.bias"] = model.ln_final.bias
    weights["text_projection"] = model.text_projection
    return PlainTextTower(
        weights={name: tensor.detach() for name, tensor in weights.items()},
        layers=len(blocks),
        heads=int(blocks[0].attn.num_heads),
        eps=float(blocks[0].ln_1.eps),
        activation="gelu" if isinstance(blocks[0].mlp.gelu, torch.nn.GELU) else "quick_gelu",
    )


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


def load_text_tower(arch: str, pretrained: str | None, checkpoint: Path):
    """A causal CLIP whose text tower (and ``logit_scale``) hold the weights of ``checkpoint``
    and whose image tower stays on the meta device; None when the model or the checkpoint does
    not allow that (then load the whole model)."""
    import open_clip
    import torch

    if checkpoint.suffix in (".npz", ".npy"):
        return None
    with torch.device("meta"), _quiet_root_logger():
        # The tag (if any) still sets the preprocessing config; load_weights=False reads no weights
        # (open_clip then logs that the model is "initialized randomly": it is not, see below).
        model = open_clip.create_model(
            arch, pretrained=pretrained, load_weights=False, device="meta", weights_only=True
        )
    if not can_truncate(model):
        return None
    result = model.load_state_dict(_text_weights(checkpoint), strict=False, assign=True)
    if result.unexpected_keys or any(not k.startswith("visual.") for k in result.missing_keys):
        return None
    # Not in checkpoints (a non-persistent buffer): the causal mask, as open_clip builds it.
    size = model.attn_mask.shape[0]
    model.attn_mask = torch.full((size, size), float("-inf")).triu_(1)
    tensors = [*model.named_parameters(), *model.named_buffers()]
    if any(t.is_meta for name, t in tensors if not name.startswith("visual.")):
        return None
    return model.float().eval()  # fp16 checkpoints (the bundled model) run in fp32 or bf16


def _text_weights(checkpoint: Path) -> dict:
    """The checkpoint's tensors but the image tower's, named as open_clip's ``load_state_dict``
    names them, memory-mapped: read from disk only when used."""
    if checkpoint.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(checkpoint, framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys() if not k.startswith("visual.")}  # noqa: SIM118
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    state = state.get("state_dict", state)
    if next(iter(state)).startswith("module."):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return {k: v for k, v in state.items() if not k.startswith("visual.")}


@contextlib.contextmanager
def _quiet_root_logger():
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)
