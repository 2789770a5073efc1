"""Cutting the text sequence after end-of-text changes nothing for causal towers."""

from __future__ import annotations

import pytest
import torch

from mmsearch.models import register_open_clip_configs
from mmsearch.text_tower import can_truncate, encode_text_truncated

TEXTS = ["a red bicycle", "a dog", "an old lighthouse on a rocky coast at dusk, seen from a boat"]


@pytest.mark.parametrize(
    "arch",
    [
        pytest.param("mmsearch-tiny", id="mmsearch-tiny"),
        pytest.param("clipart-mini", id="clipart-mini"),
        pytest.param("ViT-B-32", id="ViT-B-32", marks=pytest.mark.slow),
        pytest.param("ViT-B-32-256", id="ViT-B-32-256", marks=pytest.mark.slow),
    ],
)
def test_truncated_encoding_equals_full_length(arch):
    import open_clip

    register_open_clip_configs()
    torch.manual_seed(0)
    model = open_clip.create_model(arch).eval()  # exactness does not depend on the weights
    tokens = open_clip.get_tokenizer(arch)(TEXTS)
    assert can_truncate(model)
    with torch.inference_mode():
        full = model.encode_text(tokens, normalize=True)
        cut = encode_text_truncated(model, tokens)
    cosine = (full * cut).sum(dim=-1)
    assert cosine.min().item() >= 0.9999


def test_bidirectional_towers_are_not_truncated():
    import open_clip

    model = open_clip.create_model("MobileCLIP2-S2")
    # MobileCLIP2's text tower attends both ways: every position sees the padding.
    assert not can_truncate(model)
