"""The geometry and colour normalisation a model expects of its input pictures.

Split in two on purpose: :func:`fit_to_model` (Pillow only) runs in decoder worker processes and
returns small uint8 arrays; :func:`to_model_tensor` (torch) runs next to the encoder. Together they
reproduce open_clip's evaluation transform (resize, centre crop, to tensor, normalise) exactly, so
embeddings do not depend on which process prepared the picture.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}

# Resize-then-crop (open_clip's exact order) while the resized picture is at most this many
# times the model's input area: any real photo, panoramas included.
_MAX_INTERMEDIATE = 16


@dataclass(frozen=True)
class PreprocessConfig:
    """How a model wants its pictures: open_clip's ``preprocess_cfg`` fields that matter at eval."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"  # "shortest" (resize + centre crop), "squash" or "longest" (pad)
    fill_color: int = 0

    @classmethod
    def from_open_clip(cls, cfg: dict) -> PreprocessConfig:
        size = cfg["size"]
        if isinstance(size, (tuple, list)):
            size = size[0]
        return cls(
            size=int(size),
            mean=tuple(float(x) for x in cfg["mean"]),
            std=tuple(float(x) for x in cfg["std"]),
            interpolation=cfg.get("interpolation", "bicubic"),
            resize_mode=cfg.get("resize_mode", "shortest"),
            fill_color=int(cfg.get("fill_color", 0)),
        )

    def to_dict(self) -> dict:
        return asdict(self)


def fit_to_model(image: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """Resize and crop an RGB picture to the model's square input; returns HxWx3 uint8."""
    size, resample = cfg.size, _RESAMPLE[cfg.interpolation]
    width, height = image.size
    if cfg.resize_mode == "squash":
        image = image.resize((size, size), resample)
    elif cfg.resize_mode == "longest":
        scale = size / max(width, height)
        new = (max(1, round(width * scale)), max(1, round(height * scale)))
        resized = image.resize(new, resample)
        image = Image.new("RGB", (size, size), (cfg.fill_color,) * 3)
        image.paste(resized, ((size - new[0]) // 2, (size - new[1]) // 2))
    else:
        # torchvision Resize(size) on a PIL image: the shorter side becomes `size`, the other
        # side int(size * long / short), then CenterCrop with torchvision's rounding.
        if width <= height:
            new = (size, int(size * height / width))
        else:
            new = (int(size * width / height), size)
        left = int(round((new[0] - size) / 2.0))
        top = int(round((new[1] - size) / 2.0))
        if new[0] * new[1] <= _MAX_INTERMEDIATE * size * size:
            if new != (width, height):
                image = image.resize(new, resample)
            image = image.crop((left, top, left + size, top + size))
        else:
            # An extreme strip (a 100000x1 "panorama" would become a 22-million-pixel-wide
            # intermediate): resample only the part the crop keeps, through Pillow's source box.
            # Equal to resize-then-crop but for rounding at the last bit.
            sx, sy = width / new[0], height / new[1]
            box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
            image = image.resize((size, size), resample, box=box)
    return np.array(image, dtype=np.uint8)  # a writable copy: torch.from_numpy needs one


def to_model_tensor(batch: np.ndarray, cfg: PreprocessConfig):
    """NxHxWx3 uint8 pictures → normalised float NCHW tensor, as open_clip's ToTensor+Normalize."""
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    return tensor.sub_(mean).div_(std)
