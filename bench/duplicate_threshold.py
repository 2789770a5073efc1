"""Calibrate a model's duplicate threshold: cosine similarities of real duplicates (the same
photo re-saved, resized, cropped a little, brightened) against those of different photos.

    python bench/duplicate_threshold.py [--models lite0-muse-clipart-memory-jmdict,clipart-mini]
        [FOLDER...]

Photos: one picture per wallpaper in /usr/share/wallpapers (the largest rendition) and every
JPEG in /usr/share/backgrounds, or the FOLDERs given. For each model it prints, per threshold,
the share of duplicates found and the share of photos wrongly paired with a different one (their
nearest other photo scores at or above it), and the calibrated ``duplicate_threshold``: halfway
from the closest two different photos to a perfect copy (1.0), rounded to 0.01.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mmsearch.encoders.base import create_encoder  # noqa: E402
from mmsearch.encoders.registry import resolve_model  # noqa: E402
from mmsearch.imaging.pictures import load_image  # noqa: E402
from mmsearch.imaging.preprocess import fit_to_model  # noqa: E402

SUFFIXES = {".jpg", ".jpeg", ".png"}


def photos(folders: list[Path]) -> list[Path]:
    if folders:
        return sorted(p for f in folders for p in f.rglob("*") if p.suffix.lower() in SUFFIXES)
    found = []
    for wallpaper in sorted(Path("/usr/share/wallpapers").glob("*/contents/images")):
        renditions = [p for p in wallpaper.iterdir() if p.suffix.lower() in SUFFIXES]
        if renditions:
            found.append(max(renditions, key=lambda p: p.stat().st_size))
    found += sorted(Path("/usr/share/backgrounds").rglob("*.jpg"))
    return found


def same_pixels(pictures: list[Image.Image]) -> np.ndarray:
    """Which pairs of the photo set are the same picture by their pixels (a wallpaper shipped at
    two resolutions): 32x32 thumbnails within 3% on average. These pairs are left out of the
    "different photos", so that the model is judged against a truth it does not define."""
    thumbs = np.stack([np.asarray(p.resize((32, 32)), np.float32) / 255 for p in pictures])
    flat = thumbs.reshape(len(pictures), -1)
    distance = np.abs(flat[:, None, :] - flat[None, :, :]).mean(axis=2)
    return distance < 0.03


def variants(picture: Image.Image) -> dict[str, Image.Image]:
    """What a photo library holds as "the same picture": re-saved, smaller, trimmed, edited."""
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=50)
    w, h = picture.size
    return {
        "jpeg q50": Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"),
        "half size": picture.resize((w // 2, h // 2), Image.Resampling.LANCZOS),
        "5% crop": picture.crop((w // 40, h // 40, w - w // 40, h - h // 40)),
        "brighter": ImageEnhance.Brightness(picture).enhance(1.15),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path)
    parser.add_argument("--models", default="lite0-muse-clipart-memory-jmdict,clipart-mini")
    args = parser.parse_args()
    paths = photos(args.folders)
    pictures = [load_image(p, min_size=1024) for p in paths]
    twins = same_pixels(pictures)
    np.fill_diagonal(twins, True)
    shipped_twice = int((twins.sum(axis=1) > 1).sum())
    print(f"{len(paths)} photos ({shipped_twice} of them shipped twice), 4 duplicates of each")
    for name in args.models.split(","):
        encoder = create_encoder(resolve_model(name), device="cpu")
        cfg = encoder.preprocess

        def encode(images: list[Image.Image], cfg=cfg, encoder=encoder) -> np.ndarray:
            return encoder.encode_images(np.stack([fit_to_model(i, cfg) for i in images]))

        originals = encode(pictures)
        kinds = list(variants(pictures[0]))
        duplicate = np.zeros((len(pictures), len(kinds)), np.float32)
        for i, picture in enumerate(pictures):
            copies = encode(list(variants(picture).values()))
            duplicate[i] = copies @ originals[i]
        similarity = originals @ originals.T
        similarity[twins] = -1  # itself, and the same picture at another resolution
        nearest_other = similarity.max(axis=1)
        worst = np.unravel_index(np.argmax(similarity), similarity.shape)
        # Halfway from the closest different photos to a perfect copy: a larger library has
        # closer different photos than this sample, so the threshold keeps a margin above them.
        calibrated = round((nearest_other.max() + 1) / 2, 2)
        print(f"\n{name}")
        for k, kind in enumerate(kinds):
            low, median = np.percentile(duplicate[:, k], [0, 50])
            print(f"  duplicates, {kind:<9}: min {low:.3f}  median {median:.3f}")
        print(
            f"  different photos, nearest other: median {np.median(nearest_other):.3f}, "
            f"max {nearest_other.max():.3f} ({paths[worst[0]].name} ~ {paths[worst[1]].name})"
        )
        print("  threshold  duplicates found  photos wrongly paired")
        for threshold in sorted({0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, calibrated}):
            found = (duplicate >= threshold).mean()
            wrong = (nearest_other >= threshold).mean()
            print(f"  {threshold:9.2f}  {found:16.3f}  {wrong:21.3f}")
        print(f"  calibrated duplicate_threshold: {calibrated:.2f}")


if __name__ == "__main__":
    main()
