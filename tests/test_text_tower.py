"""Cutting the text sequence after end-of-text changes nothing for causal towers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmsearch.encoders.registry import register_open_clip_configs
from mmsearch.encoders.text_tower import can_truncate, encode_text_truncated

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


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize(
    "model",
    [
        pytest.param("clipart-mini", id="clipart-mini"),
        pytest.param("ViT-B-32-256", id="ViT-B-32-256", marks=pytest.mark.slow),
    ],
)
def test_low_precision_text_weights_agree_with_fp32(model, precision):
    from mmsearch.encoders.base import OpenClipEncoder
    from mmsearch.encoders.registry import ModelSpec, resolve_model

    spec = resolve_model(model) if model == "clipart-mini" else ModelSpec(model, model, None)
    torch.manual_seed(0)
    fp32 = OpenClipEncoder(spec, device="cpu", text_precision="fp32").encode_texts(TEXTS)
    torch.manual_seed(0)  # the same random weights for the architecture without a checkpoint
    low = OpenClipEncoder(spec, device="cpu", text_precision=precision).encode_texts(TEXTS)
    assert (fp32 * low).sum(axis=1).min() >= 0.99


@pytest.mark.slow
def test_low_precision_text_weights_keep_the_top_ten(tmp_path):
    """On a real library (the bundled model on sample_corpus), bf16 and int8 text weights return
    the same ten images as fp32 for every query, in the same order but for near-ties."""
    from indexer import index_paths
    from mmsearch import open_library
    from mmsearch.encoders.base import OpenClipEncoder
    from mmsearch.encoders.registry import resolve_model
    from tests.conftest import SAMPLE_CORPUS

    spec = resolve_model("clipart-mini")
    with open_library(tmp_path / "lib", model="clipart-mini") as library:
        index_paths(library, [SAMPLE_CORPUS / "images"], workers=0)
    queries = ["flag", "a star", "road sign", "fruit", "a bird", "a house", "a car", "a map"]
    tops, scores = {}, {}
    for precision in ("fp32", "bf16", "int8"):
        encoder = OpenClipEncoder(spec, device="cpu", text_precision=precision)
        with open_library(tmp_path / "lib", encoder=encoder) as library:
            # Straight through the encoder: the query cache would hand back the first run's.
            hits = [library.searcher.image_hits(encoder.encode_texts([q])[0], 10) for q in queries]
        tops[precision] = [[h.path for h in top] for top in hits]
        scores[precision] = [[h.score for h in top] for top in hits]
    for precision in ("bf16", "int8"):
        for exact, exact_scores, low in zip(
            tops["fp32"], scores["fp32"], tops[precision], strict=True
        ):
            assert set(low) == set(exact)  # the same ten images
            # in the same order, but for neighbours whose fp32 scores tie to 2e-3
            for rank, path in enumerate(exact):
                moved_to = low.index(path)
                assert abs(exact_scores[moved_to] - exact_scores[rank]) <= 2e-3


def test_int8_text_weights_are_the_default_on_x86_and_per_text():
    """``auto`` takes the int8 tower here (an x86 CPU), and a text's vector is the same whatever
    else is in its batch (activations are quantized per text)."""
    from mmsearch.encoders.base import OpenClipEncoder
    from mmsearch.encoders.int8_text_tower import Int8TextTower, int8_available
    from mmsearch.encoders.registry import resolve_model

    if not int8_available():
        pytest.skip("no x86 int8 engine in this PyTorch build")
    encoder = OpenClipEncoder(resolve_model("clipart-mini"), device="cpu")
    together = encoder.encode_texts(TEXTS)
    assert isinstance(encoder._int8_text, Int8TextTower)
    alone = np.concatenate([encoder.encode_texts([text]) for text in TEXTS])
    np.testing.assert_array_equal(together, alone)
    tower = encoder._int8_text
    encoder.encode_images(np.zeros((1, 64, 64, 3), np.uint8))  # loads the whole model
    assert encoder._int8_text is tower  # the same text weights: not quantized again
    np.testing.assert_array_equal(encoder.encode_texts(TEXTS), together)


def test_int8_text_weights_need_a_plain_tower(tiny_model):
    """A tower the int8 forward does not reproduce (layer scale) is refused when int8 is asked
    for, and ``auto`` falls back to the truncated tower."""
    from open_clip.transformer import LayerScale

    from mmsearch.encoders.base import OpenClipEncoder
    from mmsearch.encoders.registry import resolve_model
    from mmsearch.errors import ModelError

    spec = resolve_model(str(tiny_model))
    for precision in ("int8", "auto"):
        encoder = OpenClipEncoder(spec, device="cpu", text_precision=precision)
        model = encoder._load(text_only=True)
        model.transformer.resblocks[0].ls_1 = LayerScale(model.transformer.width, 0.5)
        encoder._model = None
        encoder._load_text_tower = lambda model=model: model  # the altered tower, as loaded
        if precision == "int8":
            with pytest.raises(ModelError, match="int8 text weights need"):
                encoder.encode_texts(TEXTS)
        else:
            assert encoder.encode_texts(TEXTS).shape == (3, encoder.dim)
            assert encoder._int8_text is None


@pytest.mark.parametrize(
    "model",
    [
        pytest.param("clipart-mini", id="bundled-fp16-folder"),
        pytest.param("tiny", id="trained-folder"),
        pytest.param("arch-and-file", id="arch-and-checkpoint-file"),
        pytest.param("tag", id="pretrained-tag"),
    ],
)
def test_text_queries_load_only_the_text_tower(model, tiny_model, tmp_path, monkeypatch):
    """A text query reads only the text weights, and encodes exactly as the whole model does;
    the first image to encode then loads the whole model."""
    import numpy as np
    import open_clip

    from mmsearch.encoders.base import OpenClipEncoder
    from mmsearch.encoders.registry import resolve_model

    if model in ("arch-and-file", "tag"):
        register_open_clip_configs()
        torch.manual_seed(0)
        torch.save(open_clip.create_model("mmsearch-tiny").state_dict(), tmp_path / "tiny.pt")
    if model == "arch-and-file":
        model = f"mmsearch-tiny:{tmp_path / 'tiny.pt'}"
    elif model == "tag":
        # A pretrained tag (the default model's kind) whose weights are already cached here;
        # the tag's own preprocessing (mean and std) must still apply.
        cached = {"file": str(tmp_path / "tiny.pt"), "mean": (0.5,) * 3, "std": (0.25,) * 3}
        monkeypatch.setitem(open_clip.pretrained._PRETRAINED, "mmsearch-tiny", {"cached": cached})
        model = "mmsearch-tiny:cached"
    spec = resolve_model(str(tiny_model) if model == "tiny" else model)
    whole = OpenClipEncoder(spec, device="cpu", text_precision="fp32")
    whole._load()
    text_only = OpenClipEncoder(spec, device="cpu", text_precision="fp32")
    vectors = text_only.encode_texts(TEXTS)
    assert text_only._text_only
    assert all(p.is_meta for p in text_only._model.visual.parameters())
    assert not any(p.is_meta for n, p in text_only._model.named_parameters() if "visual" not in n)
    np.testing.assert_allclose(vectors, whole.encode_texts(TEXTS), atol=1e-6)
    assert text_only.preprocess == whole.preprocess and text_only.dim == whole.dim
    if spec.pretrained == "cached":
        assert text_only.preprocess.mean == (0.5,) * 3
    assert text_only.identity() == whole.identity()

    size = whole.preprocess.size
    pictures = np.random.default_rng(0).integers(0, 255, (2, size, size, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        text_only.encode_images(pictures), whole.encode_images(pictures), atol=1e-6
    )
    assert not text_only._text_only


def test_checkpoint_of_another_architecture_still_says_so_for_text(tmp_path):
    import open_clip

    from mmsearch.encoders.base import OpenClipEncoder
    from mmsearch.encoders.registry import resolve_model
    from mmsearch.errors import ModelError

    register_open_clip_configs()
    torch.save(open_clip.create_model("mmsearch-tiny").state_dict(), tmp_path / "tiny.pt")
    encoder = OpenClipEncoder(resolve_model(f"clipart-mini:{tmp_path / 'tiny.pt'}"))
    with pytest.raises(ModelError, match="is the checkpoint of this architecture"):
        encoder.encode_texts(["a dog"])
