"""Tower features of a captioned collection, computed once and cached: what makes LiT cheap.

With both towers locked, training touches only the heads, so each picture goes through the image
tower once per view, ever: the plain view (exactly what indexing computes) and ``views``
augmented ones (a random crop of 60–100 % of the area and a flip, from a picture decoded a
little larger than the tower's input). Each caption goes through the text tower once. The
arrays are cached in the output folder under a key of everything they depend on (the tower
package's identity, how the tower computes (its network's version and number format), the
files' paths, sizes and times, the views and the seed), so a second experiment on the same
collection starts training at once.

Augmented views are drawn from a generator seeded by the seed and the picture's position, so
the cache is the same whatever the order in which the decoder workers finish.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from mmsearch.errors import ImageError
from mmsearch.imaging.pictures import open_picture
from mmsearch.imaging.preprocess import PreprocessConfig, fit_to_model

CROP_MARGIN = 1.3  # augmented views are cropped from a picture this much larger than the input
MIN_AREA = 0.6  # the smallest crop, as a fraction of the picture's area
_CHUNK = 128  # pictures per image tower pass (and the decoders' look-ahead is twice this)


def decode_views(
    path: str, index: int, cfg: PreprocessConfig, views: int, seed: int
) -> np.ndarray | str:
    """The plain view and ``views`` augmented ones of one picture (V+1 x S x S x 3 uint8), or
    the reason it cannot be decoded."""
    try:
        picture = open_picture(path, min_size=int(cfg.size * CROP_MARGIN)).image
    except ImageError as exc:
        return str(exc)
    out = [fit_to_model(picture, cfg)]
    if views:
        large = PreprocessConfig(**{**asdict(cfg), "size": int(cfg.size * CROP_MARGIN)})
        big = Image.fromarray(fit_to_model(picture, large))
        rng = np.random.default_rng([seed, index])
        for _ in range(views):
            side = big.width * np.sqrt(rng.uniform(MIN_AREA, 1.0))
            left, top = rng.uniform(0, big.width - side, size=2)
            crop = big.resize(
                (cfg.size, cfg.size), Image.Resampling.BICUBIC, (left, top, left + side, top + side)
            )
            if rng.random() < 0.5:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            out.append(np.asarray(crop))
    return np.stack(out)


def image_features(
    paths: Sequence[str],
    encoder,
    *,
    views: int,
    seed: int,
    cache_dir: Path,
    workers: int = 0,
    on_skip: Callable[[str, str], None] = lambda path, why: None,
    progress: Callable[[int], None] = lambda done: None,
) -> tuple[np.ndarray, list[int]]:
    """(V+1) x N x F tower features of the decodable ``paths`` and the indices of those kept.

    ``encoder`` is a :class:`~mmsearch.encoders.towers_encoder.TowersEncoder` (its towers are what
    count: one made with ``towers_only`` will do); ``workers`` decoder processes run ahead of
    the tower (0: decode here).
    """
    cfg = encoder.preprocess
    files = [_file_id(p) for p in paths]
    key = _key(encoder.towers_identity()["image"], encoder.image_computation(), files, views, seed)
    cache = cache_dir / f"image-features-{key}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            return data["features"], data["kept"].tolist()
    features: list[np.ndarray] = []
    kept: list[int] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        if batch:
            stacked = np.stack(batch)  # n x (V+1) x S x S x 3
            flat = encoder.tower_features(stacked.reshape(-1, *stacked.shape[2:]))
            features.append(flat.reshape(len(batch), views + 1, -1).astype(np.float32))
            progress(len(kept))
            batch.clear()

    for index, result in _decoded(paths, cfg, views, seed, workers):
        if isinstance(result, str):
            on_skip(paths[index], result)
            continue
        kept.append(index)
        batch.append(result)
        if len(batch) == _CHUNK:
            flush()
    flush()
    if not features:
        return np.zeros((views + 1, 0, 0), np.float32), []
    stacked = np.concatenate(features).transpose(1, 0, 2)
    _save(cache, features=stacked, kept=np.array(kept, dtype=np.int64))
    return stacked, kept


def text_features(texts: Sequence[str], encoder, *, cache_dir: Path) -> np.ndarray:
    """N x F text tower features of ``texts`` (cached like the image features)."""
    key = _key(encoder.towers_identity()["text"], list(texts))
    cache = cache_dir / f"text-features-{key}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as data:
            return data["features"]
    features = encoder.text_features(list(texts))
    _save(cache, features=features)
    return features


def _decoded(paths, cfg, views, seed, workers):
    """(index, views or reason) in order, decoding up to two chunks ahead in ``workers``."""
    if workers <= 0:
        for index, path in enumerate(paths):
            yield index, decode_views(path, index, cfg, views, seed)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        pending: deque = deque()
        for index, path in enumerate(paths):
            pending.append((index, pool.submit(decode_views, path, index, cfg, views, seed)))
            if len(pending) >= 2 * _CHUNK:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


def _file_id(path: str) -> tuple[str, int, int]:
    try:
        stat = os.stat(path)
    except OSError:
        return (path, -1, -1)
    return (path, stat.st_size, stat.st_mtime_ns)


def _key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _save(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
