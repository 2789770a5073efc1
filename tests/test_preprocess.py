"""Our split preprocessing (Pillow in workers, torch beside the encoder) equals open_clip's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmsearch.imaging.preprocess import PreprocessConfig, fit_to_model, to_model_tensor


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


WALLPAPERS = Path("/usr/share/wallpapers")


@pytest.mark.slow
@pytest.mark.skipif(not WALLPAPERS.is_dir(), reason="Debian plasma-workspace-wallpapers missing")
def test_fast_decoding_gives_open_clips_embeddings_on_real_photos():
    """Draft-mode JPEG decoding and integer reduction in the workers, then our resize, against
    open_clip's own transform of the fully decoded photo: the embeddings must agree."""
    import open_clip

    from mmsearch.encoders.base import OpenClipEncoder
    from mmsearch.encoders.registry import resolve_model
    from mmsearch.imaging.pictures import open_picture

    photos = sorted(WALLPAPERS.glob("*/contents/images/*.jpg"))[::6][:16]
    encoder = OpenClipEncoder(resolve_model("clipart-mini"), device="cpu")
    cfg = encoder.preprocess
    transform = open_clip.image_transform(cfg.size, is_train=False, mean=cfg.mean, std=cfg.std)
    model = encoder._load()
    fast, reference = [], []
    for path in photos:
        picture = open_picture(path, min_size=cfg.size).image
        fast.append(encoder.encode_images(fit_to_model(picture, cfg)[None])[0])
        with torch.inference_mode():
            full = transform(Image.open(path).convert("RGB"))[None]
            reference.append(model.encode_image(full, normalize=True)[0].numpy())
    fast, reference = np.stack(fast), np.stack(reference)
    agreement = (fast * reference).sum(axis=1)
    assert agreement.min() >= 0.99, agreement
    different = reference @ reference.T
    assert different[~np.eye(len(photos), dtype=bool)].mean() < 0.9  # the check can fail
