"""A towers model: a pretrained image tower and a pretrained text tower joined by trained heads.

This is LiT ("locked-image tuning", Zhai et al. 2022) in its simplest useful form: both towers
stay as their packages ship them (:mod:`mmsearch.encoders.towers`), and two small heads, trained by
:mod:`mmsearch.train.lit_training` with CLIP's contrastive loss, map their features into one shared
space. Everything the heads need is in a model folder:

* ``towers_config.json``: which towers, the head shapes, the dimension, the temperature and
  the preprocessing (a :class:`TowersConfig`);
* ``heads.npz``: the head weights and the image features' standardisation, plain arrays loaded
  with ``allow_pickle=False`` (nothing in the file can run code), and optionally a memory of the
  training collection that both heads' vectors read from (:mod:`mmsearch.encoders.memory`).

The heads run in numpy, so a text query needs no torch at all: the text tower of the bundled
model (Universal Sentence Encoder) is numpy too, which is what makes a cold query fast.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mmsearch.encoders import memory
from mmsearch.encoders.lexicon import Lexicon
from mmsearch.encoders.memory import Readout, unit
from mmsearch.encoders.registry import ModelSpec, weights_id
from mmsearch.encoders.stored_arrays import StoredArrays
from mmsearch.encoders.towers import (
    ImageTowerSpec,
    image_tower_spec,
    load_text_tower,
    text_tower_spec,
    tower_identity,
)
from mmsearch.errors import InputError, ModelError
from mmsearch.imaging.preprocess import PreprocessConfig

CONFIG_FILE = "towers_config.json"
HEADS_FILE = "heads.npz"


@dataclass(frozen=True)
class TowersConfig:
    """What a towers model folder describes; stored as ``towers_config.json``.

    Attributes:
        image_tower: a name from :data:`mmsearch.encoders.towers.IMAGE_TOWERS`.
        text_tower: a name from :data:`mmsearch.encoders.towers.TEXT_TOWERS`.
        dim: the shared embedding dimension.
        image_hidden: width of the image head's hidden layer; 0 for a linear head.
        logit_scale: the learnt temperature (CLIP's ``exp(t)``), for ``tag``'s softmax.
        resize_mode: how pictures are fitted to the tower's square input.
        image_size: the input size; 0 for the size the tower was trained at. Smaller is much
            faster (EfficientNet-Lite0 at 192 px: 1.9 times the images per second of 224 px).
        image_memory: how an image vector reads the training titles of its nearest pictures
            (:mod:`mmsearch.encoders.memory`); inactive by default.
        text_memory: how a text vector reads the pictures of its nearest training captions.
        heads: the head weights' file, relative to the folder; a model that only adds to
            another's (class names, a dictionary) names the other's file instead of shipping a copy.
        lexicon: a Japanese–English dictionary file in the folder (:mod:`mmsearch.encoders.lexicon`)
            whose glosses are added to Japanese texts' tower vectors; "" for none.
        lexicon_weight: the glosses' weight against the text's own vector.
        classes: a file in the folder with the image tower's classifier and its class names'
            text vectors (:mod:`mmsearch.train.class_names`); "" for none.
        class_memory: how an image vector reads the names of the classes the classifier sees.
    """

    image_tower: str
    text_tower: str
    dim: int
    image_hidden: int = 0
    logit_scale: float = 100.0
    resize_mode: str = "longest"
    image_size: int = 0
    image_memory: Readout = Readout()
    text_memory: Readout = Readout()
    heads: str = HEADS_FILE
    lexicon: str = ""
    lexicon_weight: float = 0.0
    classes: str = ""
    class_memory: Readout = Readout()

    @classmethod
    def read(cls, folder: Path) -> TowersConfig:
        try:
            data = json.loads((folder / CONFIG_FILE).read_text())
            for side in ("image_memory", "text_memory", "class_memory"):
                if side in data:
                    data[side] = Readout(**data[side])
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise ModelError(f"cannot read towers model {folder / CONFIG_FILE}: {exc}") from exc

    def write(self, folder: Path) -> None:
        (folder / CONFIG_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")

    def preprocess(self) -> PreprocessConfig:
        tower = image_tower_spec(self.image_tower)
        return PreprocessConfig(
            size=self.image_size or tower.size,
            mean=tower.mean,
            std=tower.std,
            interpolation="bicubic",
            resize_mode=self.resize_mode,
            fill_color=255,  # clip art and icons sit on white; padding in white adds no edge
        )


class Heads:
    """The trained projections, in numpy: tower features → unit vectors of ``dim``.

    The image head standardises the tower's features (their training mean and std), then
    applies one linear layer, or two with a GELU between them; the text head is linear. Where
    the heads carry a memory of the training collection and ``config`` reads it, each vector is
    then pulled toward its neighbours' (:mod:`mmsearch.encoders.memory`).
    """

    IMAGE_KEYS = ("image_mean", "image_std", "image_w1", "image_b1")
    TEXT_KEYS = ("text_w1", "text_b1")

    def __init__(self, arrays: Mapping[str, np.ndarray], config: TowersConfig | None = None):
        if isinstance(arrays, StoredArrays):  # read from files, each array when first used
            self.arrays, self.shapes = arrays, arrays.shapes
        else:
            self.arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
            self.shapes = {k: v.shape for k, v in self.arrays.items()}
        self.image_memory = config.image_memory if config else Readout()
        self.text_memory = config.text_memory if config else Readout()
        self.class_memory = config.class_memory if config else Readout()

    @classmethod
    def read(cls, path: Path, config: TowersConfig, classes: Path | None = None) -> Heads:
        """The head weights in ``path``, with the class names in ``classes`` where given;
        checked against ``config`` now, each array read when first used."""
        heads = cls(StoredArrays([path, classes] if classes else [path]), config)
        heads.check(config)
        return heads

    def write(self, path: Path) -> None:
        # The memory in half precision: it is most of the file, and a cosine between two
        # half-precision unit vectors is exact to 1e-3, far below the gaps a ranking turns on.
        np.savez(
            path,
            **{
                k: v.astype(np.float16) if k in memory.KEYS and k != memory.CAPTION_COUNTS else v
                for k, v in self.arrays.items()
            },
        )

    def check(self, config: TowersConfig) -> None:
        """The weights fit the towers and dimension the config names.

        Raises:
            ModelError: they were trained for other towers or another dimension, or the config
                reads a memory that the weights do not hold.
        """
        reads_memory = config.image_memory.active or config.text_memory.active
        absent = [k for k in memory.KEYS if k not in self.arrays]
        if reads_memory and absent:
            raise ModelError(
                f"the towers model's config reads a memory of its training pictures, but its "
                f"head weights hold none ({', '.join(absent)} missing); the config and heads.npz "
                "come from different trainings: copy both files of one model folder, or retrain "
                "with `mmsearch train --kind towers`"
            )
        if config.class_memory.active and not all(k in self.arrays for k in memory.CLASS_ARRAYS):
            raise ModelError(
                "the towers model's config reads class names, but they are missing (the config "
                "names no classes file, or it holds none); rebuild it with "
                "scripts/build_class_names.py"
            )
        image = image_tower_spec(config.image_tower).features
        text = text_tower_spec(config.text_tower).features
        hidden = config.image_hidden or config.dim
        expected = {
            "image_mean": (image,),
            "image_std": (image,),
            "image_w1": (image, hidden),
            "image_b1": (hidden,),
            "text_w1": (text, config.dim),
            "text_b1": (config.dim,),
        }
        if config.image_hidden:
            expected |= {"image_w2": (hidden, config.dim), "image_b2": (config.dim,)}
        if reads_memory:
            pictures = self.shapes[memory.IMAGES][0]
            captions = self.shapes[memory.CAPTIONS][0]
            expected |= {
                memory.IMAGES: (pictures, config.dim),
                memory.TITLES: (pictures, config.dim),
                memory.CAPTIONS: (captions, text),
                memory.CAPTION_IMAGES: (captions, config.dim),
                memory.CAPTION_COUNTS: (captions,),
            }
        if config.class_memory.active:
            classes, pooled = self.shapes[memory.CLASS_KEYS]
            expected |= {
                # its rows read the last of the tower's features, and end with a bias
                memory.CLASS_KEYS: (classes, min(pooled, image + 1)),
                memory.CLASS_NAMES: (classes, config.dim),
            }
        for key, shape in expected.items():
            found = self.shapes.get(key)
            if found != shape:
                raise ModelError(
                    f"the head weights do not fit {config.image_tower} + {config.text_tower} "
                    f"at dimension {config.dim}: {key} is "
                    f"{'missing' if found is None else tuple(found)}, expected {shape}; "
                    "the heads were trained for other towers (retrain them with `mmsearch train "
                    "--kind towers`)"
                )

    def images(self, features: np.ndarray) -> np.ndarray:
        a = self.arrays
        x = (features - a["image_mean"]) / a["image_std"]
        x = x @ a["image_w1"] + a["image_b1"]
        if "image_w2" in a:
            x = _gelu(x) @ a["image_w2"] + a["image_b2"]
        plain = unit(x)
        vectors = memory.pull(plain, plain, a.get(memory.IMAGES), a.get(memory.TITLES),
                              self.image_memory)  # fmt: skip
        if not self.class_memory.active:
            return vectors
        keys = a[memory.CLASS_KEYS]
        queries = memory.classifier_queries(features, keys)
        names = a[memory.CLASS_NAMES]
        return memory.pull(vectors, queries, keys, names, self.class_memory, over_all_keys=True)

    def texts(self, features: np.ndarray) -> np.ndarray:
        a = self.arrays
        vectors = unit(features @ a["text_w1"] + a["text_b1"])
        if not self.text_memory.active:
            return vectors
        return memory.pull(
            vectors,
            unit(features),
            a[memory.CAPTIONS],
            a[memory.CAPTION_IMAGES],
            self.text_memory,
            counts=a[memory.CAPTION_COUNTS],
        )


def _gelu(x: np.ndarray) -> np.ndarray:
    # The tanh form of torch.nn.GELU(approximate="tanh"), which training uses.
    return 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3)))


class TowersEncoder:
    """A towers model folder as an :class:`~mmsearch.encoders.base.Encoder`.

    Args:
        spec: a spec of kind ``towers`` (see :func:`mmsearch.encoders.registry.resolve_model`).
        device: ``"cpu"`` or ``"cuda"`` for the image tower; the text tower runs on the CPU.
        batch_size: pictures per forward pass of the image tower.
        image_precision: ``"auto"`` (the tower's blocks in bf16 on a CPU with native bf16),
            ``"fp32"`` or ``"bf16"``.
        towers_only: instead of ``spec``, the towers of this config without heads: their
            features (:meth:`tower_features`, :meth:`text_features`) for training the heads.
    """

    def __init__(
        self,
        spec: ModelSpec | None,
        *,
        device: str | None = None,
        batch_size: int = 64,
        image_precision: str = "auto",
        towers_only: TowersConfig | None = None,
    ):
        if image_precision not in ("auto", "fp32", "bf16"):
            raise ModelError(f"image precision {image_precision!r}: use auto, fp32 or bf16")
        self.spec = spec
        if towers_only is not None:
            self.config, self.heads, self.lexicon = towers_only, None, None
        else:
            self.config = TowersConfig.read(spec.folder)
            classes = spec.folder / self.config.classes if self.config.classes else None
            self.heads = Heads.read(spec.folder / self.config.heads, self.config, classes)
            self.lexicon = self._open_lexicon()
        self._image_spec: ImageTowerSpec = image_tower_spec(self.config.image_tower)
        self._text_spec = text_tower_spec(self.config.text_tower)
        self._device = device
        self.batch_size = batch_size
        self._image_precision = image_precision
        self._image_tower = None
        self._text_tower = None

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.config.preprocess()

    @property
    def logit_scale(self) -> float:
        return self.config.logit_scale

    def identity(self) -> dict:
        """What must match for two vector sets to be comparable: the heads and both towers."""
        return {
            "model": self.spec.name,
            "kind": "towers",
            "arch": self.spec.arch,
            "pretrained": None,
            "weights": weights_id(self.spec),
            "towers": self.towers_identity(),
            "dim": self.dim,
            "preprocess": self.preprocess.to_dict(),
        }

    def image_computation(self) -> dict:
        """How this encoder computes image tower features beyond the tower's weights: the
        network's rewrite and the number format. Cached features are keyed by it, so features
        of another computation are never mixed into training."""
        from mmsearch.encoders.precision import image_precision, pick_device
        from mmsearch.encoders.tower_network import NETWORK_VERSION

        device = pick_device(self._device)
        return {
            "network": NETWORK_VERSION,
            "precision": image_precision(self._image_precision, device),
            "device": device,
        }

    def towers_identity(self) -> dict:
        """``{"image": ..., "text": ...}``: each tower's name, package, version and weights hash."""
        return {
            "image": {"name": self._image_spec.name, **tower_identity(self._image_spec)},
            "text": {"name": self._text_spec.name, **tower_identity(self._text_spec)},
        }

    # -- encoding ------------------------------------------------------------------------------

    def tower_features(self, pictures: np.ndarray) -> np.ndarray:
        """NxHxWx3 uint8 pictures fitted to :attr:`preprocess` → the image tower's features."""
        import torch

        from mmsearch.imaging.preprocess import to_model_tensor

        tower = self._load_image_tower()
        out = []
        for start in range(0, len(pictures), self.batch_size):
            batch = to_model_tensor(pictures[start : start + self.batch_size], self.preprocess)
            batch = batch.to(self._device).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                out.append(tower(batch).float().cpu().numpy())
        if not out:
            return np.zeros((0, self._image_spec.features), np.float32)
        return np.concatenate(out)

    def encode_images(self, pictures: np.ndarray) -> np.ndarray:
        return self.heads.images(self.tower_features(pictures))

    def text_features(self, texts: list[str]) -> np.ndarray:
        """Texts → the text tower's sentence vectors (numpy; no torch)."""
        for text in texts:
            if not text.strip():
                raise InputError("a query text is empty; give some words to search for")
            if len(text) > self._text_spec.max_chars:
                raise InputError(
                    f"a query of {len(text)} characters is longer than {self.spec.name}'s text "
                    f"tower takes ({self._text_spec.max_chars}); shorten it"
                )
        if not texts:
            return np.zeros((0, self._text_spec.features), np.float32)
        if self._text_tower is None:
            self._text_tower = load_text_tower(self._text_spec)
        features = np.asarray(self._text_tower.encode(list(texts)), dtype=np.float32)
        if self.lexicon is None:
            return features
        glossed = [(i, g) for i, t in enumerate(texts) if (g := self.lexicon.translate(t))]
        if glossed:
            rows = [i for i, _ in glossed]
            glosses = np.asarray(self._text_tower.encode([g for _, g in glossed]), np.float32)
            mixed = features[rows] + self.config.lexicon_weight * glosses
            # the sum at the text's own length: the heads were trained on the tower's vectors
            lengths = np.linalg.norm(features[rows], axis=1, keepdims=True)
            features[rows] = unit(mixed) * lengths
        return features

    def _open_lexicon(self) -> Lexicon | None:
        if not (self.config.lexicon and self.config.lexicon_weight > 0):
            return None
        return Lexicon(self.spec.folder / self.config.lexicon)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self.heads.texts(self.text_features(texts))

    def export_text_tower(self, folder: Path, weights: str) -> bool:
        """Nothing to export: this text tower and the heads already run without torch. Loading
        the text tower here writes its snapshot (:mod:`.sentence_snapshot`) at the end of an
        index run, so the first search after it starts from the snapshot too."""
        if self._text_tower is None:
            self._text_tower = load_text_tower(self._text_spec)
        return False

    def _load_image_tower(self):
        if self._image_tower is None:
            import torch

            from mmsearch.encoders.precision import image_precision, pick_device
            from mmsearch.encoders.tower_network import build_tower

            self._device = pick_device(self._device)
            tower = build_tower(self._image_spec).to(self._device)
            tower = tower.to(memory_format=torch.channels_last)
            if image_precision(self._image_precision, self._device) == "bf16":
                tower.cast_blocks(torch.bfloat16)
            self._image_tower = tower
        return self._image_tower


def write_model(folder: Path, config: TowersConfig, heads: Heads) -> None:
    """Write a towers model folder (the config and the head weights)."""
    heads.check(config)
    folder.mkdir(parents=True, exist_ok=True)
    heads.write(folder / HEADS_FILE)
    config.write(folder)
