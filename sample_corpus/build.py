"""Build sample_corpus/ from Debian's Open Clip Art packages (public domain).

    sudo apt-get install openclipart-png openclipart-svg
    python sample_corpus/build.py

Takes up to 16 drawings from each top-level category of the held-out tenth of the library
(``int(sha1(relative_path).hexdigest(), 16) % 10 == 0``, the split that clipart-mini never saw in
training), shrinks each to at most 320 px on its longer side (to keep the repository small; the
drawings are public domain) and writes ``captions.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "scripts"))
sys.path.insert(0, str(HERE.parent))
from openclipart import PNG_ROOT, is_held_out, iter_clipart  # noqa: E402

from mmsearch.errors import ImageError  # noqa: E402
from mmsearch.imaging.pictures import load_image  # noqa: E402

PER_CATEGORY = 16
MAX_SIDE = 320
# Held-out drawings taken besides the per-category ones, so that every subject the semantic tests
# ask for (in English and Japanese) is there: clocks, boats, musical instruments.
SUBJECTS = (
    "signs_and_symbols/clocks/clock02.png",
    "signs_and_symbols/clocks/clock04.png",
    "recreation/music/harp_mo_01.png",
    "recreation/music/harp1_ganson.png",
    "transportation/boating/sailing_capsize5.png",
    "transportation/vehicles/the_mad_little_ship_core_01.png",
)


def main() -> None:
    by_category = defaultdict(list)
    for item in iter_clipart():
        if is_held_out(item.relative_path):
            by_category[item.relative_path.split("/")[0]].append(item)
    images_dir = HERE / "images"
    shutil.rmtree(images_dir, ignore_errors=True)
    rows = []
    subjects = [i for items in by_category.values() for i in items if i.relative_path in SUBJECTS]
    for category in [*sorted(by_category), "subjects"]:  # "subjects": the SUBJECTS list
        # Titled drawings first (better captions), then a stable pseudo-random order.
        items = sorted(
            by_category[category],
            key=lambda i: (not i.title, hashlib.sha1(i.relative_path.encode()).hexdigest()),
        )
        if category == "subjects":
            taken_paths = {row["image"] for row in rows}
            items = [i for i in subjects if f"images/{i.relative_path}" not in taken_paths]
        taken = 0
        for item in items:
            if taken == PER_CATEGORY:
                break
            try:
                picture = load_image(PNG_ROOT / item.relative_path)
            except ImageError as exc:
                print(f"skipped: {exc}", file=sys.stderr)
                continue
            picture.thumbnail((MAX_SIDE, MAX_SIDE))
            target = images_dir / item.relative_path
            target.parent.mkdir(parents=True, exist_ok=True)
            picture.save(target, optimize=True)
            rows.append(
                {
                    "image": f"images/{item.relative_path}",
                    "caption": item.caption,
                    "title": item.title,
                    "description": item.description,
                    "keywords": list(item.keywords),
                    "category": item.category,
                }
            )
            taken += 1
    with open(HERE / "captions.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} images, {len(subjects)} of them chosen subjects")


if __name__ == "__main__":
    main()
