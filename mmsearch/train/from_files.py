"""``mmsearch train`` and ``mmsearch eval`` over files: read, decode (cached), train, score."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from mmsearch.train.captioned import read_captioned
from mmsearch.train.evaluation import RetrievalScores, evaluate_encoder
from mmsearch.train.open_clip_training import (
    TrainConfig,
    TrainingSample,
    TrainResult,
    load_pictures,
    train,
)


def cached_pictures(
    samples: list[TrainingSample], size: int, cache_dir: Path
) -> tuple[np.ndarray, list[TrainingSample]]:
    """Decoded pictures for ``samples``, cached so that reruns and resumes skip decoding."""
    key = hashlib.sha1(json.dumps([size, [s.image for s in samples]]).encode()).hexdigest()[:16]
    cache = cache_dir / f"pictures-{size}-{key}.npz"
    if cache.exists():
        with np.load(cache, allow_pickle=False) as data:
            keep = set(data["kept"].tolist())
            return data["pictures"], [s for s in samples if s.image in keep]

    def report(path: str, why: str) -> None:
        print(f"skipped: {why}", file=sys.stderr)

    pictures, kept = load_pictures(samples, size, on_skip=report)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, pictures=pictures, kept=np.array([s.image for s in kept]))
    os.replace(tmp, cache)
    return pictures, kept


def train_from_files(
    captions_file: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    config: TrainConfig,
    *,
    val_file: str | os.PathLike[str] | None = None,
    images_root: str | None = None,
    skip_missing: bool = False,
    progress: bool = False,
    resume: bool = True,
    validate_every: int = 1,
    log=print,
) -> TrainResult:
    """Train on a captioned collection file; evaluate on ``val_file`` as training goes."""
    import open_clip

    from mmsearch.encoders.registry import register_open_clip_configs

    register_open_clip_configs()
    samples = read_captioned(captions_file, images_root=images_root, skip_missing=skip_missing)
    output_dir = Path(output_dir)
    model_cfg = open_clip.get_model_config(config.arch) or {}
    size = model_cfg.get("vision_cfg", {}).get("image_size", 224)
    crop_from = int(round(size * (1 + config.crop_margin)))
    pictures, samples = cached_pictures(samples, crop_from, output_dir / "cache")
    validate = None
    if val_file is not None:
        val_samples = read_captioned(val_file, images_root=images_root, skip_missing=skip_missing)
        val_pictures, val_samples = cached_pictures(val_samples, size, output_dir / "cache")
        val_captions = [s.captions[0] for s in val_samples]

        def validate(encoder) -> dict:
            scores = evaluate_encoder(encoder, val_pictures, val_captions)
            metrics = {
                "t2i_R@10": scores.text_to_image["R@10"],
                "i2t_R@10": scores.image_to_text["R@10"],
            }
            log(json.dumps(metrics))
            return metrics

    return train(
        samples,
        output_dir,
        config,
        pictures=pictures,
        validate=validate,
        validate_every=validate_every,
        progress=progress,
        resume=resume,
    )


def train_towers_from_files(
    captions_file: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    config,
    *,
    val_file: str | os.PathLike[str] | None = None,
    images_root: str | None = None,
    skip_missing: bool = False,
    resume: bool = True,
    log=print,
) -> TrainResult:
    """Train a towers model (:mod:`mmsearch.train.lit_training`) on a captioned collection file;
    with ``val_file``, score the result on it at the end (the epoch is chosen on a slice of the
    training collection, never on ``val_file``)."""
    from mmsearch.train.lit_training import train_towers

    samples = read_captioned(captions_file, images_root=images_root, skip_missing=skip_missing)
    result = train_towers(
        samples,
        output_dir,
        config,
        workers=os.cpu_count() or 1,
        resume=resume,
        log=log,
        on_skip=lambda path, why: log(f"skipped: {why}"),
    )
    if val_file is not None:
        from mmsearch.encoders.base import create_encoder
        from mmsearch.encoders.registry import resolve_model

        encoder = create_encoder(resolve_model(str(output_dir)))
        scores = evaluate_file(
            encoder, val_file, images_root=images_root, skip_missing=skip_missing
        )
        log(json.dumps({"t2i": scores.text_to_image, "i2t": scores.image_to_text}))
        result.history.append({"val_file": scores.to_dict()})
    return result


def evaluate_file(
    encoder,
    captions_file: str | os.PathLike[str],
    *,
    images_root: str | None = None,
    skip_missing: bool = False,
    on_skip=lambda path, why: None,
) -> RetrievalScores:
    """Score an encoder on a captioned collection (the first caption of each image counts).

    Images that cannot be decoded (corrupt, over the decompression-bomb limit) are left out and
    reported through ``on_skip``; the scores say how many.
    """
    pictures, captions, skipped = scored_pictures(
        captions_file, encoder.preprocess, images_root=images_root, skip_missing=skip_missing,
        on_skip=on_skip,
    )  # fmt: skip
    scores = evaluate_encoder(encoder, pictures, captions)
    return dataclasses.replace(scores, skipped_images=skipped)


def scored_pictures(
    captions_file: str | os.PathLike[str],
    cfg,
    *,
    images_root: str | None = None,
    skip_missing: bool = False,
    on_skip=lambda path, why: None,
) -> tuple[np.ndarray, list[str], int]:
    """What ``evaluate_file`` scores: the collection's decodable pictures fitted to ``cfg`` (a
    PreprocessConfig), the first caption of each, and how many could not be decoded."""
    from mmsearch.errors import ImageError
    from mmsearch.imaging.pictures import open_picture
    from mmsearch.imaging.preprocess import fit_to_model

    samples = read_captioned(captions_file, images_root=images_root, skip_missing=skip_missing)
    pictures, captions, skipped = [], [], 0
    for sample in samples:
        try:
            picture = open_picture(sample.image, min_size=cfg.size).image
        except ImageError as exc:
            on_skip(sample.image, str(exc))
            skipped += 1
            continue
        pictures.append(fit_to_model(picture, cfg))
        captions.append(sample.captions[0])
    return np.stack(pictures), captions, skipped
