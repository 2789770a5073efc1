"""Encoders turn pictures and texts into unit vectors in one shared space.

:class:`Encoder` is the small interface the library depends on; :class:`OpenClipEncoder` is the
default implementation. Heavy imports (torch, open_clip) happen on first use, so that opening a
library, listing it or printing help stays fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from mmsearch.encoders.int8_text_tower import Int8TextTower
from mmsearch.encoders.precision import (
    IMAGE_PRECISIONS,
    TEXT_PRECISIONS,
    image_precision,
    pick_device,
    text_precision,
)
from mmsearch.encoders.registry import (
    OFFLINE_MODEL,
    ModelSpec,
    offline_presets,
    register_open_clip_configs,
    weights_id,
)
from mmsearch.encoders.text_tower import (
    can_truncate,
    cast_text_tower,
    encode_text_truncated,
    load_text_tower,
)
from mmsearch.errors import ModelError, ModelUnavailableError
from mmsearch.imaging.preprocess import PreprocessConfig, to_model_tensor


class Encoder(Protocol):
    """What the library needs of a dual encoder."""

    spec: ModelSpec

    @property
    def dim(self) -> int: ...

    @property
    def preprocess(self) -> PreprocessConfig: ...

    @property
    def logit_scale(self) -> float:
        """The learnt temperature that turns cosine similarities into classification logits."""
        ...

    def identity(self) -> dict: ...

    def encode_images(self, pictures: np.ndarray) -> np.ndarray:
        """NxHxWx3 uint8 pictures already fitted to :attr:`preprocess` → N x dim float32, unit."""
        ...

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Texts → N x dim float32 unit vectors."""
        ...

    def export_text_tower(self, folder: Path, weights: str) -> bool:
        """Write the text tower for torch-free queries into ``folder``; False when this model's
        cannot be (or need not be) exported."""
        ...


def create_encoder(spec: ModelSpec, *, device: str | None = None) -> Encoder:
    """The encoder that runs ``spec``, by its kind (nothing is loaded yet)."""
    if spec.kind == "towers":
        from mmsearch.encoders.towers_encoder import TowersEncoder

        return TowersEncoder(spec, device=device)
    if spec.kind != "open_clip":
        raise ModelError(f"model {spec.name} is of unknown kind {spec.kind!r}")
    return OpenClipEncoder(spec, device=device)


class OpenClipEncoder:
    """An open_clip model as an :class:`Encoder`.

    Args:
        spec: which model (see :func:`mmsearch.encoders.registry.resolve_model`).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``…; default: CUDA when available.
        batch_size: how many items one forward pass takes.
        text_precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"int8"``. Text queries are
            bound by reading the text weights: bf16 halves that, int8 projections
            (:mod:`mmsearch.encoders.int8_text_tower`) halve it again, and both agree with fp32 to a
            cosine of 0.99 and more with the same top ten on a real library (tested). ``auto``
            takes int8 on an x86 CPU for the plain CLIP text tower, else bf16 on a CPU with
            native bf16 for a tower that can be cut after end-of-text, else fp32.
        image_precision: ``"auto"`` (bf16 on a CPU with native bf16, else fp32), ``"fp32"`` or
            ``"bf16"``: the image tower's body in bf16, its stem in fp32
            (:mod:`mmsearch.encoders.image_tower`); 2–4 times the images per second on such CPUs,
            vectors that agree with fp32 to a cosine of 0.999 and more, the same top ten (tested).
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        device: str | None = None,
        batch_size: int = 32,
        text_precision: str = "auto",
        image_precision: str = "auto",
    ):
        if text_precision not in TEXT_PRECISIONS:
            raise ModelError(f"text precision {text_precision!r}: use auto, fp32, bf16 or int8")
        if image_precision not in IMAGE_PRECISIONS:
            raise ModelError(f"image precision {image_precision!r}: use auto, fp32 or bf16")
        self._image_precision = image_precision
        self.spec = spec
        self._device = device
        self.batch_size = batch_size
        self._text_precision = text_precision
        self._model = None
        self._text_format: str | None = None  # "int8", "bf16" or "fp32" once loaded
        # Built by the first text (quantizing takes 0.5 s for ViT-B/32); kept across reloads.
        self._int8_text: Int8TextTower | None = None
        self._text_only = False  # the image tower is not loaded (see text_tower.load_text_tower)
        self._tokenizer = None
        self._preprocess: PreprocessConfig | None = None

    # -- loading -------------------------------------------------------------------------------

    def _load(self, *, text_only: bool = False):
        """The model; with ``text_only``, the text tower alone will do (a text query)."""
        if self._model is not None and (text_only or not self._text_only):
            return self._model
        import open_clip
        import torch

        register_open_clip_configs()
        self._device = pick_device(self._device)
        model = self._load_text_tower() if text_only and self._device == "cpu" else None
        self._text_only = model is not None
        if model is None:
            model = self._load_whole()
        self._model = model
        self._truncate = can_truncate(model)
        self._text_format = text_precision(self._text_precision, self._device, model)
        if self._text_format is None:
            raise ModelError(
                f"int8 text weights need an x86 CPU and a plain CLIP text tower, and "
                f"{self.spec.name} on {self._device} does not qualify; use text precision auto, "
                "fp32 or bf16"
            )
        if self._truncate and self._text_format == "bf16":
            cast_text_tower(model, torch.bfloat16)
        if not self._text_only and image_precision(self._image_precision, self._device) == "bf16":
            from mmsearch.encoders.image_tower import cast_image_body

            cast_image_body(model.visual, torch.bfloat16)
        self._tokenizer = open_clip.get_tokenizer(self.spec.arch)
        pp = dict(model.visual.preprocess_cfg) if hasattr(model.visual, "preprocess_cfg") else {}
        self._preprocess = PreprocessConfig.from_open_clip({"size": model.visual.image_size, **pp})
        return model

    def _load_text_tower(self):
        """The text tower alone, when the weights are a local file (or cached); else None."""
        spec = self.spec
        checkpoint = spec.weights_path
        if checkpoint is None and spec.pretrained and not spec.arch.startswith("hf-hub:"):
            from open_clip.pretrained import download_pretrained, get_pretrained_cfg

            from mmsearch.encoders.hub import go_offline_unless_reachable

            go_offline_unless_reachable()
            tag = get_pretrained_cfg(spec.arch, spec.pretrained)
            try:
                checkpoint = Path(download_pretrained(tag)) if tag else None
            except Exception:  # noqa: BLE001 - not cached and no network: the whole-model path explains
                return None
        if checkpoint is None:
            return None
        try:
            return load_text_tower(spec.arch, spec.pretrained, checkpoint)
        except (RuntimeError, OSError, ValueError, KeyError):
            return None  # the whole-model path reports what is wrong with the checkpoint

    def export_text_tower(self, folder: Path, weights: str) -> bool:
        """Write the text tower for torch-free queries (:mod:`mmsearch.encoders.numpy_text_tower`)
        in fp32; False when this model's cannot be (not a plain causal CLIP, or weights not
        local)."""
        import open_clip

        from mmsearch.encoders.numpy_text_tower import export

        register_open_clip_configs()
        model = self._load_text_tower()
        if model is None:
            return False
        return export(model, open_clip.get_tokenizer(self.spec.arch), folder, weights)

    def _load_whole(self):
        import open_clip

        spec = self.spec
        if _downloads(spec):
            from mmsearch.encoders.hub import go_offline_unless_reachable

            go_offline_unless_reachable()
        try:
            model = open_clip.create_model(
                spec.arch,
                pretrained=spec.pretrained,
                device=self._device,
                weights_only=True,
                require_pretrained=bool(spec.pretrained) or spec.arch.startswith("local-dir:"),
            )
        except ImportError as exc:
            raise ModelUnavailableError(
                f"model {spec.name} needs a package that is not installed ({exc}); "
                "install it with pip (e.g. `pip install transformers` for Hugging Face text towers)"
            ) from exc
        except (RuntimeError, OSError, ValueError, AssertionError) as exc:
            # open_clip asserts on some shape mismatches (text positions of another width)
            raise _load_error(spec, exc) from exc
        if spec.reparameterize:
            # MobileCLIP's inference form: fold the training-time branches (timm does this).
            from timm.utils.model import reparameterize_model

            model = reparameterize_model(model)
        return model.eval()

    @property
    def device(self) -> str:
        self._load(text_only=True)
        return self._device

    @property
    def dim(self) -> int:
        model = self._load(text_only=True)
        if getattr(model, "text_projection", None) is not None and hasattr(
            model.text_projection, "shape"
        ):
            return int(model.text_projection.shape[-1])
        return int(self.encode_texts(["dimension probe"]).shape[1])

    @property
    def preprocess(self) -> PreprocessConfig:
        self._load(text_only=True)  # the config is known without the image weights
        return self._preprocess

    @property
    def logit_scale(self) -> float:
        """The learnt temperature that turns cosine similarities into classification logits."""
        model = self._load(text_only=True)
        scale = getattr(model, "logit_scale", None)
        return float(scale.detach().exp()) if scale is not None else 100.0

    def identity(self) -> dict:
        """What must match for two vector sets to be comparable."""
        return {
            "model": self.spec.name,
            "arch": self.spec.arch,
            "pretrained": self.spec.pretrained,
            "reparameterize": self.spec.reparameterize,
            "weights": weights_id(self.spec),
            "dim": self.dim,
            "preprocess": self.preprocess.to_dict(),
        }

    # -- encoding ------------------------------------------------------------------------------

    def encode_images(self, pictures: np.ndarray) -> np.ndarray:
        import torch

        model = self._load()
        out = []
        for start in range(0, len(pictures), self.batch_size):
            tensor = to_model_tensor(pictures[start : start + self.batch_size], self._preprocess)
            with torch.inference_mode():
                features = model.encode_image(tensor.to(self._device), normalize=True)
            out.append(features.float().cpu().numpy())
        return _stack(out, self.dim)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        model = self._load(text_only=True)
        if self._text_format == "int8" and self._int8_text is None:
            self._int8_text = Int8TextTower.build(model)
            if self._int8_text is None:
                self._text_format = "fp32"  # the tower could not be quantized after all
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self._tokenizer(texts[start : start + self.batch_size]).to(self._device)
            with torch.inference_mode():
                if self._int8_text:
                    features = self._int8_text.encode(tokens)
                elif self._truncate:
                    features = encode_text_truncated(model, tokens)
                else:
                    features = model.encode_text(tokens, normalize=True)
            out.append(features.float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _stack(parts: list[np.ndarray], dim: int) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)


def _load_error(spec: ModelSpec, exc: Exception) -> ModelError:
    reason = _first_words(str(exc), 200) or repr(exc)
    if _downloads(spec):
        return ModelUnavailableError(
            f"could not get the weights of {spec.name} ({spec.arch}"
            f"{':' + spec.pretrained if spec.pretrained else ''}); downloading needs network "
            f"access to the Hugging Face Hub ({reason}). Models that work offline: "
            f"{', '.join(offline_presets())} (bundled with mmsearch; --model {OFFLINE_MODEL}), "
            "--model ARCH:/path/to/checkpoint, --model /path/to/model-folder, or copy "
            "~/.cache/huggingface from a machine that has network"
        )
    return ModelError(
        f"cannot load model {spec.name}: {_first_words(str(exc), 300) or repr(exc)}; "
        "is the checkpoint of this architecture?"
    )


def _downloads(spec: ModelSpec) -> bool:
    """Whether loading ``spec`` fetches weights from the Hub (a tag or ``hf-hub:``)."""
    return bool(spec.pretrained and not os.path.isfile(spec.pretrained)) or spec.arch.startswith(
        "hf-hub:"
    )


def _first_words(text: str, limit: int) -> str:
    """The first line of ``text``, cut at a word boundary to at most ``limit`` characters."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    if len(line) <= limit:
        return line
    return line[:limit].rsplit(" ", 1)[0] + " …"
