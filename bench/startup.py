"""Start-up cost of the command line: ``mmsearch --help``, a mistyped option, and a cold
``mmsearch search``, for this tree and for another checkout of mmsearch, alternated in one run.

    python bench/startup.py [--other /tmp/mmsearch-before] [--runs 9]

``--other`` is a checkout of an earlier commit (``git worktree add /tmp/mmsearch-before REV``);
both run with this virtual environment, the other tree first on ``sys.path``. The cold search
uses the lite0-muse-clipart-memory-jmdict library of ``bench/cold_query.py``
(data/bench-cold-lite0-muse-clipart-memory-jmdict, made when missing), with a query not asked
before.
Prints median wall seconds per tree.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LIBRARY = REPO / "data" / "bench-cold-lite0-muse-clipart-memory-jmdict"


def timed(tree: Path, args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    # cwd too: ``python -m`` puts the working folder first on sys.path.
    subprocess.run(
        [sys.executable, "-m", "mmsearch", *args], env=env, cwd=tree, capture_output=True
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    if not (LIBRARY / "library.db").is_file():
        subprocess.run(
            [sys.executable, "-m", "mmsearch", "index", str(REPO / "sample_corpus/images"),
             "--model", "lite0-muse-clipart-memory-jmdict", "--library", str(LIBRARY)],
            check=True, capture_output=True,
        )  # fmt: skip
    trees = {"this tree": REPO, **({"other": args.other.resolve()} if args.other else {})}
    cases = {
        "--help": lambda: ["--help"],
        "mistyped option": lambda: ["search", "x", "--nope"],
        "cold search": lambda: ["search", f"a dog {uuid.uuid4().hex[:6]}", "-k", "5",
                                "--library", str(LIBRARY)],
    }  # fmt: skip
    times = {(t, c): [] for t in trees for c in cases}
    for _ in range(args.runs):
        for case, argv in cases.items():
            for name, tree in trees.items():
                times[name, case].append(timed(tree, argv()))
    print(f"median of {args.runs} runs, seconds")
    print(f"{'case':<18}" + "".join(f"{name:>12}" for name in trees))
    for case in cases:
        row = "".join(f"{statistics.median(times[n, case]):>12.3f}" for n in trees)
        print(f"{case:<18}{row}")


if __name__ == "__main__":
    main()
