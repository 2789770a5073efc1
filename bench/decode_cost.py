"""What decoding one file for the model costs on one core, per folder (one format each).

    python bench/decode_cost.py /tmp/rawbench/jpeg /tmp/rawbench/dng-preview [--size 224]

Each file goes through mmsearch's decoder (``open_picture`` at the model's input size, as the
indexer's workers call it) ``--repeat`` times in this one process; the median and the fastest
time per file are printed. Ratios between folders measured in the same run are what to quote:
the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from mmsearch.imaging.pictures import is_image_path, open_picture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--size", type=int, default=224, help="the model's input size")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    report = {}
    for folder in args.folders:
        files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image_path(p))
        if not files:
            parser.error(f"no image files in {folder}")
        open_picture(files[0], min_size=args.size)  # imports and first-use set-up, not timed
        seconds = []
        for _ in range(args.repeat):
            for path in files:
                start = time.perf_counter()
                picture = open_picture(path, min_size=args.size)
                seconds.append(time.perf_counter() - start)
        report[str(folder)] = {
            "files": len(files),
            "median_ms": round(statistics.median(seconds) * 1000, 1),
            "fastest_ms": round(min(seconds) * 1000, 1),
            "last_picture": f"{picture.width}x{picture.height} {picture.format} decoded at "
            f"{picture.image.width}x{picture.image.height}",
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
