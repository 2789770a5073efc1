"""Warm text queries on a CPU with int8 projection weights.

A text query of a few tokens through a CLIP text tower is bound by reading the tower's weights:
the attention and MLP projections are 151 MB in fp32 for ViT-B/32, read whole for every query.
bf16 halves that; int8 halves it again. :class:`Int8TextTower` runs the plain CLIP text tower
(:class:`mmsearch.encoders.text_tower.PlainTextTower`) with those projections quantized to int8 per
output channel and executed by PyTorch's quantized dynamic linear (FBGEMM on x86: activations
are quantized per call, products accumulate in int32). Everything else (embeddings, norms,
attention scores, the final projection) stays in fp32, and so does the first block: it reads
the raw token embeddings, and on the bundled model it carried nearly all of int8's error
(mean 1 − cosine with fp32 over the sample captions: 1.8e-5 with it quantized, 1e-6 without).
Activations use all 8 bits on CPUs with VNNI and 7 elsewhere (as ``torch.ao``'s dynamic
``Linear`` always does), where 8 could overflow. The forward pass is written out here rather
than run through ``nn.MultiheadAttention``, whose Python overhead is a millisecond a query.

The activations' scale is taken over the whole input of a call, so each text is encoded on its
own: a text's vector never depends on what else is in its batch.
"""

from __future__ import annotations

import functools
import warnings

from mmsearch.encoders.text_tower import PlainTextTower, plain_text_tower

# Quantized engines whose dynamic int8 linear this was measured and tested with (x86 CPUs).
_ENGINES = ("x86", "fbgemm")


def int8_available() -> bool:
    """Whether this CPU build runs int8 dynamic linears with an engine we tested."""
    import torch

    return torch.backends.quantized.engine in _ENGINES


class Int8TextTower:
    """A plain CLIP text tower with int8 projections: token ids → unit vectors (fp32)."""

    def __init__(self, tower: PlainTextTower):
        import torch

        w = tower.weights
        self.heads, self.eps = tower.heads, tower.eps
        self.gelu = torch.nn.functional.gelu if tower.activation == "gelu" else _quick_gelu
        fp32 = {name: t.float().contiguous() for name, t in w.items()}
        self.token_embedding = fp32["token_embedding"]
        self.positional_embedding = fp32["positional_embedding"]
        self.ln_final = (fp32["ln_final.weight"], fp32["ln_final.bias"])
        self.text_projection = fp32["text_projection"]
        # 8-bit activations overflow FBGEMM's int16 pair sums on CPUs without VNNI
        vnni = getattr(torch.cpu, "_is_vnni_supported", lambda: False)()
        int8 = functools.partial(_int8_linear, reduce_range=not vnni)
        self.layers = []
        for layer in range(tower.layers):
            p = f"{layer}."
            linear = _fp32_linear if layer == 0 else int8  # the first block stays fp32 (above)
            self.layers.append(
                {
                    "ln_1": (fp32[p + "ln_1.weight"], fp32[p + "ln_1.bias"]),
                    "ln_2": (fp32[p + "ln_2.weight"], fp32[p + "ln_2.bias"]),
                    "qkv": linear(fp32[p + "in_proj_weight"], fp32[p + "in_proj_bias"]),
                    "out": linear(fp32[p + "out_proj.weight"], fp32[p + "out_proj.bias"]),
                    "fc": linear(fp32[p + "c_fc.weight"], fp32[p + "c_fc.bias"]),
                    "proj": linear(fp32[p + "c_proj.weight"], fp32[p + "c_proj.bias"]),
                }
            )

    @classmethod
    def build(cls, model) -> Int8TextTower | None:
        """``model``'s text tower with int8 projections; None when it is not a plain CLIP
        text tower or this CPU has no tested int8 engine."""
        tower = plain_text_tower(model) if int8_available() else None
        if tower is None:
            return None
        try:
            return cls(tower)
        except (RuntimeError, AttributeError):  # a PyTorch without these quantized operators
            return None

    def encode(self, tokens):
        """(N, context) token ids → (N, dim) fp32 unit vectors: ``encode_text(normalize=True)``."""
        import torch

        return torch.cat([self._encode_one(row) for row in tokens])

    def _encode_one(self, tokens):
        import torch.nn.functional as F

        end = int(tokens.argmax())  # CLIP pools at end-of-text, the largest token id
        x = F.embedding(tokens[: end + 1], self.token_embedding)  # causal: cut after it
        x = x + self.positional_embedding[: end + 1]
        length, width = x.shape
        for layer in self.layers:
            h = F.layer_norm(x, (width,), *layer["ln_1"], self.eps)
            q, k, v = (
                layer["qkv"](h)
                .reshape(length, 3, self.heads, -1)
                .permute(1, 2, 0, 3)  # (q/k/v, head, position, head width)
            )
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + layer["out"](attended.transpose(0, 1).reshape(length, width))
            h = F.layer_norm(x, (width,), *layer["ln_2"], self.eps)
            x = x + layer["proj"](self.gelu(layer["fc"](h)))
        pooled = F.layer_norm(x[-1:], (width,), *self.ln_final, self.eps)
        return F.normalize(pooled @ self.text_projection, dim=-1)


def _fp32_linear(weight, bias):
    import torch

    return functools.partial(torch.nn.functional.linear, weight=weight, bias=bias)


def _int8_linear(weight, bias, reduce_range: bool):
    """``F.linear`` with ``weight`` in int8 (symmetric, one scale per output channel)."""
    import torch

    scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    with warnings.catch_warnings():  # quantized tensors are deprecated; the pinned torch has them
        warnings.filterwarnings("ignore", message=r".*quantize_per_channel.*")
        quantized = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
    packed = torch.ops.quantized.linear_prepack(quantized, bias)
    return functools.partial(
        torch.ops.quantized.linear_dynamic, W_prepack=packed, reduce_range=reduce_range
    )


def _quick_gelu(x):
    import torch

    return x * torch.sigmoid(1.702 * x)
