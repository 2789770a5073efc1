"""Image towers with their body in bf16: 2–4 times the images per second on CPUs with native bf16.

Nearly all of an image tower's work is its body (a ViT's transformer blocks, a ResNet's stages),
and on a CPU with bf16 matrix units (AMX, AVX512-BF16) that work runs several times faster in
bf16. The stem is another matter: it reads the raw pixels, and in bf16 it carried nearly all of
the error (measured on the bundled model over sample_corpus, 1 − cosine with fp32: at most
4.7e-3 with the whole tower in bf16, 6.3e-5 with the stem kept in fp32). So
:func:`cast_image_body` casts the body alone, each part of it wrapped to take and give fp32:
the stem (and a ViT's final norm and projection) compute what they compute in fp32.
"""

from __future__ import annotations

import torch  # imported by the encoder once it loads a model: torch is loaded by then


def cast_image_body(visual, dtype) -> bool:
    """Run the body of ``visual`` (an open_clip image tower) in ``dtype``; returns whether this
    tower's body is known (open_clip's ViT and ModifiedResNet, timm trunks with ``stages``).
    An unknown tower is left as it is."""
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer

    if isinstance(visual, VisionTransformer):
        visual.transformer = CastModule(visual.transformer, dtype)
    elif isinstance(visual, ModifiedResNet):
        for name in ("layer1", "layer2", "layer3", "layer4", "attnpool"):
            setattr(visual, name, CastModule(getattr(visual, name), dtype))
    elif isinstance(getattr(getattr(visual, "trunk", None), "stages", None), torch.nn.Sequential):
        stages = visual.trunk.stages
        for i, stage in enumerate(stages):
            stages[i] = CastModule(stage, dtype)
    else:
        return False
    return True


class CastModule(torch.nn.Module):
    """``module`` in ``dtype``, called with and returning the caller's dtype."""

    def __init__(self, module: torch.nn.Module, dtype: torch.dtype):
        super().__init__()
        self.module = module.to(dtype)
        self.dtype = dtype

    def forward(self, x, *args, **kwargs):
        return self.module(x.to(self.dtype), *args, **kwargs).to(x.dtype)
