"""Cold text queries on the bundled models: a new ``mmsearch search`` process per query.

    python bench/cold_query.py [--runs 7] [--models lite0-muse-clipart-memory-jmdict,clipart-mini]

Indexes sample_corpus once per model (into data/bench-cold-MODEL, reused), then times ``mmsearch
search`` in new processes, each with a query not asked before (so the query cache cannot answer
it), and one warm query in a loaded library. Each cold query is timed twice, interleaved: as a
user runs it, and with a cache folder that cannot be written (so a towers model parses its
sentence encoder's tokenizer instead of loading the snapshot). Prints the median wall time per
model, in one run, so the models compare on the same machine state; and whether the cold process
imported torch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHECK = (
    "import sys, runpy; sys.argv = ['mmsearch', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('mmsearch', run_name='__main__')\n"
    "except SystemExit: pass\n"
    "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--models", default="lite0-muse-clipart-memory-jmdict,clipart-mini")
    args = parser.parse_args()
    rows = []
    for model in args.models.split(","):
        library = REPO / "data" / f"bench-cold-{model}"
        if not (library / "library.db").is_file():
            subprocess.run(
                [sys.executable, "-m", "mmsearch", "index", str(REPO / "sample_corpus/images"),
                 "--model", model, "--library", str(library)],
                check=True, capture_output=True,
            )  # fmt: skip
        times, unsnapshotted, torch_loaded = [], [], False
        for _ in range(args.runs):
            # Interleaved, so both see the same machine: with the sentence encoder's snapshot
            # (the cache as a user has it after one query), and with a cache that cannot be
            # written, where the tokenizer is parsed and the weights decompressed each time.
            for cache, into in ((None, times), ("/dev/null/no-cache", unsnapshotted)):
                env = dict(os.environ, **({"MMSEARCH_CACHE_DIR": cache} if cache else {}))
                query = f"a drawing of a dog {uuid.uuid4().hex[:6]}"
                started = time.perf_counter()
                run = subprocess.run(
                    [sys.executable, "-c", CHECK, "search", query, "-k", "5", "--library",
                     str(library)],
                    check=True, capture_output=True, text=True, env=env,
                )  # fmt: skip
                into.append(time.perf_counter() - started)
                torch_loaded |= "NO-TORCH" not in run.stderr
        from mmsearch import open_library

        with open_library(library, create=False) as lib:
            lib.search_text("warm up", k=5)
            warm = []
            for _ in range(20):
                query = f"a red bicycle {uuid.uuid4().hex[:6]}"  # never asked: not in the cache
                t = time.perf_counter()
                lib.search_text(query, k=5)
                warm.append(time.perf_counter() - t)
        rows.append(
            {
                "model": model,
                "cold_s_median": round(statistics.median(times), 3),
                "cold_s_median_cache_unwritable": round(statistics.median(unsnapshotted), 3),
                "warm_ms_p50": round(1000 * statistics.median(warm), 2),
                "cold_imports_torch": torch_loaded,
            }
        )
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
