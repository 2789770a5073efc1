"""What an image tower of a towers model computes: pooled features from several depths.

An ImageNet network's last layer answers "which of 1,000 classes"; what a picture collection is
searched for is often elsewhere: its style, its palette, the set it was drawn in. So the tower's
features are the head's pooled 1280-d vector *and* the mean and standard deviation over positions
of each block's output from :attr:`ImageTowerSpec.taps_from` on. Measured on the Open Clip Art
held-out tenth (BENCHMARKS.md), these multi-depth features lift text → image R@10 from 0.60 to
0.65 and image → text from 0.78 to 0.82 over the last layer alone, for the same heads.

The standard deviation is what carries style: a Gram matrix's diagonal, as in style transfer.
"""

from __future__ import annotations

import torch

from mmsearch.encoders.inference_network import for_inference
from mmsearch.encoders.towers import ImageTowerSpec, load_image_tower

# How the tower computes, beyond its weights, for caches of its features: 2 since the network is
# rewritten for inference (:mod:`.inference_network`: the same function to float rounding).
NETWORK_VERSION = 2


class PooledFeatures(torch.nn.Module):
    """A timm EfficientNet → ``N x spec.features`` (see the module docstring)."""

    def __init__(self, network, spec: ImageTowerSpec):
        super().__init__()
        self.network = network
        self.taps_from = spec.taps_from
        self.blocks_dtype = torch.float32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.network
        x = net.bn1(net.conv_stem(x)).to(self.blocks_dtype)
        pooled = []
        for i, block in enumerate(net.blocks):
            x = block(x)
            if i >= self.taps_from:
                y = x.float()
                pooled += [y.mean((2, 3)), y.std((2, 3))]
        pooled.append(net.bn2(net.conv_head(x.float())).mean((2, 3)))
        return torch.cat(pooled, 1)

    def cast_blocks(self, dtype: torch.dtype) -> None:
        """Run the blocks in ``dtype`` (bf16 on CPUs that have it: the blocks are nearly all the
        work), while the stem, which reads the pixels, the head and the pooling stay fp32. The
        activations stay in ``dtype`` from block to block; only the pooled statistics are
        taken in fp32."""
        self.network.blocks.to(dtype)
        self.blocks_dtype = dtype


def build_tower(spec: ImageTowerSpec) -> PooledFeatures:
    """The pretrained network, rewritten for inference (:mod:`.inference_network`), wrapped to
    give pooled multi-depth features, in eval mode."""
    return PooledFeatures(for_inference(load_image_tower(spec)), spec).eval()
