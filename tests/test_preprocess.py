"""Our split preprocessing (Pillow in workers, torch beside the encoder) equals open_clip's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mmsearch.preprocess import PreprocessConfig, fit_to_model, to_model_tensor


@pytest.mark.parametrize(
    "size, resize_mode, interpolation",
    [
        pytest.param((300, 200), "shortest", "bicubic", id="landscape-bicubic"),
        pytest.param((201, 333), "shortest", "bilinear", id="portrait-bilinear"),
        pytest.param((300, 200), "squash", "bicubic", id="squash"),
        pytest.param((300, 200), "longest", "bicubic", id="longest-pad"),
    ],
)
def test_matches_open_clip_transform(size, resize_mode, interpolation):
    import open_clip

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    cfg = PreprocessConfig(
        size=64,
        mean=(0.48145466, 0.4578275, 0.40821073),
        std=(0.26862954, 0.26130258, 0.27577711),
        interpolation=interpolation,
        resize_mode=resize_mode,
    )
    reference = open_clip.image_transform(
        64,
        is_train=False,
        mean=cfg.mean,
        std=cfg.std,
        resize_mode=resize_mode,
        interpolation=interpolation,
    )(image)
    ours = to_model_tensor(fit_to_model(image, cfg)[None], cfg)[0]
    assert ours.shape == reference.shape
    assert torch.allclose(ours, reference, atol=1e-5)
