"""Captioned image collections for training and evaluation: a JSONL file of image → caption(s).

Each line is ``{"image": PATH, "caption": TEXT}`` or ``{"image": PATH, "captions": [TEXT, ...]}``;
relative paths are taken from the file's own folder (or ``images_root``). Every image must lie
inside that root once symlinks and ``..`` are resolved: a captions file from elsewhere cannot make
mmsearch read files outside the collection it describes. This is also the format of
``sample_corpus/captions.jsonl``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mmsearch.errors import TrainingError
from mmsearch.train.open_clip_training import TrainingSample


def read_captioned(
    path: str | os.PathLike[str],
    *,
    images_root: str | os.PathLike[str] | None = None,
    skip_missing: bool = False,
) -> list[TrainingSample]:
    """Read a captioned collection.

    Raises:
        TrainingError: the file is missing, malformed, empty, or names images that do not exist
            (unless ``skip_missing``).
    """
    path = Path(path)
    root = (Path(images_root) if images_root else path.parent).resolve()
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise TrainingError(f"captions file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"cannot read captions file {path}: {exc}") from exc
    samples, problems, missing = [], [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not valid JSON ({exc.msg})")
            continue
        if not isinstance(row, dict) or not isinstance(row.get("image"), str):
            problems.append(f'line {number}: needs an "image" path')
            continue
        captions = row.get("captions", [row["caption"]] if "caption" in row else [])
        captions = [" ".join(c.split()) for c in captions if isinstance(c, str) and c.strip()]
        if not captions:
            problems.append(f"line {number}: image {row['image']} has no caption")
            continue
        image = (root / row["image"]).resolve()
        if not image.is_relative_to(root):
            problems.append(
                f"line {number}: image {row['image']} is outside {root} (pass --images-root "
                "with a folder that holds every image)"
            )
            continue
        if not image.is_file():
            missing.append(f"line {number}: {image}")
            continue
        samples.append(TrainingSample(str(image), captions))
    if problems:
        raise TrainingError(
            f"{path}: {len(problems)} malformed line(s): " + "; ".join(problems[:3])
        )
    if missing and not skip_missing:
        raise TrainingError(
            f"{path} names {len(missing)} image(s) that do not exist (paths are relative to "
            f"{root}): " + "; ".join(missing[:3]) + "; fix the paths or pass --skip-missing"
        )
    if not samples:
        raise TrainingError(f"{path} holds no captioned images")
    return samples
