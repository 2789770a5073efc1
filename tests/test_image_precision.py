"""bf16 image weights: the same vectors as fp32 to a cosine of 0.99, the same top ten."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import SAMPLE_CORPUS


def _pictures(encoder, count: int = 48) -> np.ndarray:
    """Real drawings from sample_corpus, fitted to the encoder's input."""
    from mmsearch.imaging.pictures import open_picture
    from mmsearch.imaging.preprocess import fit_to_model

    cfg = encoder.preprocess
    paths = sorted((SAMPLE_CORPUS / "images").rglob("*.png"))[:: 234 // count][:count]
    return np.stack([fit_to_model(open_picture(p, min_size=cfg.size).image, cfg) for p in paths])


@pytest.mark.parametrize(
    "model",
    [
        pytest.param("clipart-mini", id="clipart-mini"),
        pytest.param("ViT-B-32-256", id="ViT-B-32-256", marks=pytest.mark.slow),
        pytest.param("MobileCLIP2-S2", id="MobileCLIP2-S2", marks=pytest.mark.slow),
    ],
)
def test_bf16_image_body_agrees_with_fp32(model):
    """The body runs in bf16 (the stem in fp32), and the vectors agree with fp32."""
    import torch

    from mmsearch.encoders.base import OpenClipEncoder
    from mmsearch.encoders.registry import ModelSpec, resolve_model

    if model == "clipart-mini":
        spec = resolve_model(model)
    else:  # random weights of the architecture (pretrained weights cannot be downloaded here)
        spec = ModelSpec(model, model, None, reparameterize=model.startswith("MobileCLIP"))
    # 16 drawings for the large towers: on a CPU without native bf16 (bf16 emulated), 48
    # through MobileCLIP2-S2 took three minutes of a CI run.
    count = 48 if model == "clipart-mini" else 16
    vectors, dtypes = {}, {}
    for precision in ("fp32", "bf16"):
        encoder = OpenClipEncoder(spec, device="cpu", image_precision=precision)
        torch.manual_seed(0)  # the same random weights for the architecture without a checkpoint
        vectors[precision] = encoder.encode_images(_pictures(encoder, count))
        dtypes[precision] = [p.dtype for p in encoder._model.visual.parameters()]
    assert set(dtypes["fp32"]) == {torch.float32}
    assert dtypes["bf16"][0] == torch.float32  # the stem
    assert dtypes["bf16"].count(torch.bfloat16) > 0.8 * len(dtypes["bf16"])
    assert np.allclose(np.linalg.norm(vectors["bf16"], axis=1), 1, atol=1e-5)
    assert (vectors["fp32"] * vectors["bf16"]).sum(axis=1).min() >= 0.999


@pytest.mark.slow
def test_bf16_image_weights_keep_the_top_ten(tmp_path):
    """sample_corpus indexed with bf16 image weights returns the same ten images as with fp32
    for every query, in the same order but for neighbours whose fp32 scores nearly tie."""
    from indexer import index_paths
    from mmsearch import open_library
    from mmsearch.encoders.base import OpenClipEncoder
    from mmsearch.encoders.registry import resolve_model

    spec = resolve_model("clipart-mini")
    queries = ["flag", "a star", "road sign", "fruit", "a bird", "a house", "a car", "a map"]
    tops, scores = {}, {}
    for precision in ("fp32", "bf16"):
        encoder = OpenClipEncoder(spec, device="cpu", image_precision=precision)
        with open_library(tmp_path / precision, encoder=encoder) as library:
            index_paths(library, [SAMPLE_CORPUS / "images"], workers=0)
            hits = [library.search_text(q, k=10) for q in queries]
        tops[precision] = [[h.path for h in top] for top in hits]
        scores[precision] = [[h.score for h in top] for top in hits]
    for exact, exact_scores, low in zip(tops["fp32"], scores["fp32"], tops["bf16"], strict=True):
        assert set(low) == set(exact)
        for rank, path in enumerate(exact):
            assert abs(exact_scores[low.index(path)] - exact_scores[rank]) <= 2e-3


def test_image_precision_is_checked():
    from mmsearch.encoders.base import OpenClipEncoder
    from mmsearch.encoders.registry import resolve_model
    from mmsearch.errors import ModelError

    with pytest.raises(ModelError, match="image precision 'int8': use auto, fp32 or bf16"):
        OpenClipEncoder(resolve_model("clipart-mini"), image_precision="int8")
