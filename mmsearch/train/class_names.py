"""The class names a towers model's image vectors read (:mod:`mmsearch.encoders.memory`).

The image tower was pretrained as an ImageNet classifier; the heads keep only its features.
Its classifier still says, for any picture, which of 1,000 named things it looks like, and the
text tower can read those names: each class's name becomes a text vector through the text
head, and an image vector is pulled toward the names of the classes its logits rank highest.
The names are torchvision's list of the ImageNet-1k classes, in the classifier's order
("tench", "goldfish", …, "toilet tissue").
"""

from __future__ import annotations

import numpy as np

from mmsearch.encoders import memory
from mmsearch.encoders.towers import image_tower_classifier, image_tower_spec
from mmsearch.encoders.towers_encoder import Heads, TowersConfig, TowersEncoder
from mmsearch.errors import ModelError


def imagenet_class_names() -> list[str]:
    from torchvision.models import EfficientNet_B0_Weights

    return list(EfficientNet_B0_Weights.IMAGENET1K_V1.meta["categories"])


def class_arrays(config: TowersConfig, heads: Heads) -> dict[str, np.ndarray]:
    """``class_keys`` (the classifier, its bias last) and ``class_names`` (each name's text
    vector through ``heads``, without any memory) for a towers model's image tower."""
    weight, bias = image_tower_classifier(image_tower_spec(config.image_tower))
    names = imagenet_class_names()
    if len(names) != len(weight):
        raise ModelError(
            f"{config.image_tower}'s classifier has {len(weight)} classes, not ImageNet-1k's "
            f"{len(names)}: its class names are unknown"
        )
    towers = TowersEncoder(None, towers_only=config)
    plain = Heads({k: v for k, v in heads.arrays.items() if k not in memory.KEYS})
    return {
        memory.CLASS_KEYS: np.hstack([weight, bias[:, None]]).astype(np.float32),
        memory.CLASS_NAMES: plain.texts(towers.text_features(names)),
    }


def write_classes(path, arrays: dict[str, np.ndarray]) -> None:
    """In half precision, as the memory: logits and cosines move by about 1e-3."""
    np.savez(path, **{k: v.astype(np.float16) for k, v in arrays.items()})
