"""A pretrained EfficientNet rewritten for inference: the same function, less memory traffic.

Two exact rewrites of timm's TensorFlow-ported networks, each worth about a fifth of the image
tower's time on a CPU (BENCHMARKS.md), neither of which changes what it computes beyond float
rounding (``tests/test_towers.py``):

- **Batch norms folded into the convolutions before them.** In eval mode a batch norm is a
  per-channel scale and shift: it is multiplied into the convolution's weights and added to its
  bias, instead of being a pass over every activation.
- **TensorFlow's "SAME" padding without a padded copy.** A stride-2 convolution pads its input
  unevenly (one row and column more at the bottom and right), which timm's ``Conv2dSame`` does
  by copying the whole input into a padded tensor: at the widest blocks a copy of 77 MB per
  batch, in a layer whose own work is a quarter of that. :class:`SamePaddingConv2d` instead
  convolves with the even padding PyTorch does without a copy, which gives every output but the
  last row and column, and computes those from a padded copy of the input's last rows and
  columns only.

Only for inference: a folded network trains differently.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Which convolution each batch norm follows, per timm EfficientNet module (its attribute names).
_CONV_THEN_NORM = {
    "EfficientNet": (("conv_stem", "bn1"), ("conv_head", "bn2")),
    "DepthwiseSeparableConv": (("conv_dw", "bn1"), ("conv_pw", "bn2")),
    "InvertedResidual": (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")),
}


def for_inference(network: torch.nn.Module) -> torch.nn.Module:
    """``network`` with its batch norms folded and its SAME-padded convolutions replaced, in
    place (see the module docstring)."""
    fold_batch_norms(network)
    for module in list(network.modules()):
        for name, child in module.named_children():
            if type(child).__name__ == "Conv2dSame" and child.dilation == (1, 1):
                setattr(module, name, SamePaddingConv2d.like(child))
    return network.eval()


def fold_batch_norms(network: torch.nn.Module) -> torch.nn.Module:
    """Fold each inference batch norm into the convolution before it, in fp32 and in place."""
    for module in network.modules():
        for conv_name, norm_name in _CONV_THEN_NORM.get(type(module).__name__, ()):
            conv, norm = getattr(module, conv_name), getattr(module, norm_name)
            if not isinstance(norm, torch.nn.BatchNorm2d):
                continue  # folded already
            with torch.no_grad():
                scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
                bias = norm.bias - norm.running_mean * scale
                if conv.bias is not None:
                    bias = bias + conv.bias * scale
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
                conv.bias = torch.nn.Parameter(bias)
            # timm's BatchNormAct2d applies dropout and its activation after the norm.
            after = [getattr(norm, name) for name in ("drop", "act") if hasattr(norm, name)]
            setattr(module, norm_name, torch.nn.Sequential(*after))
    return network


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) of one dimension: ``ceil(size / stride)``
    outputs, the odd padding row at the end."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SamePaddingConv2d(torch.nn.Conv2d):
    """A convolution with TensorFlow's SAME padding that never copies its whole input."""

    @classmethod
    def like(cls, conv: torch.nn.Conv2d) -> SamePaddingConv2d:
        new = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            0,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            dtype=conv.weight.dtype,
        )
        new.load_state_dict(conv.state_dict())
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        height, width = x.shape[-2:]
        (top, bottom), (left, right) = same_padding(height, kh, sh), same_padding(width, kw, sw)
        conv = self._conv_forward
        if height + 2 * top < kh or width + 2 * left < kw:  # smaller than the kernel: pad it
            return conv(F.pad(x, (left, right, top, bottom)), self.weight, self.bias)
        # Even padding (top, left) on all sides: exactly SAME's outputs wherever a window does
        # not reach past the `top`/`left` zeros below or to the right, which is all but at most
        # the last row and column when SAME pads one more at the end.
        main = F.conv2d(x, self.weight, self.bias, self.stride, (top, left), 1, self.groups)
        rows, cols = main.shape[-2:]
        missing_rows, missing_cols = math.ceil(height / sh) > rows, math.ceil(width / sw) > cols
        first_row, first_col = rows * sh - top, cols * sw - left
        if not (missing_rows or missing_cols):
            return main
        # One output written in place: torch.cat of channels-last tensors copies slowly.
        out = torch.empty(
            (*main.shape[:2], rows + missing_rows, cols + missing_cols),
            dtype=main.dtype,
            device=main.device,
            memory_format=torch.channels_last if _channels_last(x) else torch.contiguous_format,
        )
        out[..., :rows, :cols] = main
        if missing_cols:  # the last column, beside the rows `main` has
            last = F.pad(x[..., first_col:], (0, right, top, top))
            out[..., :rows, cols:] = conv(last, self.weight, self.bias)
        if missing_rows:  # the last row, across all columns
            last = F.pad(x[..., first_row:, :], (left, right, 0, bottom))
            out[..., rows:, :] = conv(last, self.weight, self.bias)
        return out


def _channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
