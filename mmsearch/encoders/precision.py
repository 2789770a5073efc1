"""Which device and which number format an encoder computes in: one decision per tower.

Text queries are bound by reading the text weights, so the text tower takes the smallest format
that agrees with fp32 (tested: cosine 0.99 and more, the same top ten on a real library): int8
projections on an x86 CPU for a plain CLIP text tower (:mod:`mmsearch.encoders.int8_text_tower`),
else bf16 on a CPU that computes bf16 natively (AVX512-BF16 or AMX), else fp32. The image tower
takes bf16 on such CPUs for its body (2–4 times the images per second, cosine 0.999), else fp32.
An explicit choice wins where the machine and model allow it.
"""

from __future__ import annotations

from mmsearch.encoders.int8_text_tower import int8_available
from mmsearch.encoders.text_tower import plain_text_tower
from mmsearch.errors import ModelError

TEXT_PRECISIONS = ("auto", "fp32", "bf16", "int8")
IMAGE_PRECISIONS = ("auto", "fp32", "bf16")


def native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX), where bf16 pays."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def text_precision(requested: str, device: str, model) -> str | None:
    """``"int8"``, ``"bf16"`` or ``"fp32"`` for this text tower on ``device``; None when int8 was
    asked for and this model or machine cannot have it."""
    int8_possible = device == "cpu" and int8_available() and plain_text_tower(model) is not None
    if requested == "int8":
        return "int8" if int8_possible else None
    if requested == "auto":
        return "int8" if int8_possible else image_precision("auto", device)
    return requested


def image_precision(requested: str, device: str) -> str:
    """``"bf16"`` or ``"fp32"`` for an image tower's body on ``device``."""
    if requested != "auto":
        return requested
    return "bf16" if device == "cpu" and native_bf16() else "fp32"


def pick_device(device: str | None = None) -> str:
    """CUDA when available, else CPU; an explicit choice wins if this machine has it.

    Raises:
        ModelError: the device is not a torch device, or CUDA was asked for and is absent.
    """
    import torch

    if not device:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ModelError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ModelError(
            f"--device {device}: no CUDA device is available here; use --device cpu "
            "(or leave --device out to pick automatically)"
        )
    return device
