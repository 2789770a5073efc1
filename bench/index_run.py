"""Index a real folder with the real CLI and report what happened: time, outcome, peak memory.

    python bench/index_run.py /usr/share/openclipart/png [--model clipart-mini] [--workers N]
        [--ocr] [--db-url postgresql+psycopg://...]

Runs ``mmsearch index FOLDER --json`` into a fresh library in a subprocess and samples the
resident memory of its whole process tree (the indexer and its decoder workers) from /proc five
times a second. Prints the index summary's counts, the wall time, and the peak memory of the
tree and of its largest process: resident (``VmRSS``) and anonymous (``RssAnon``: resident less
the pages of mapped files, such as the index file a writer reads through its memory map, which
are page cache the kernel can drop). Linux only (reads /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _tree_memory(root: int) -> dict[str, int]:
    """Resident and anonymous bytes over ``root`` and its descendants: the sum and the largest."""
    parents = {}
    memory: dict[int, dict[str, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        memory[int(entry.name)] = {
            key: int(fields.get(field, "0 kB").split()[0]) * 1024
            for key, field in (("rss", "VmRSS"), ("anon", "RssAnon"))
        }
    members, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [c for c, p in parents.items() if p == pid and c not in members]
        members.update(children)
        frontier.extend(children)
    found = [memory.get(pid, {"rss": 0, "anon": 0}) for pid in members]
    return {
        f"{what}_{kind}": combine(m[kind] for m in found)
        for kind in ("rss", "anon")
        for what, combine in (("tree", sum), ("largest", max))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--model", default="clipart-mini")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--library", help="library folder (default: a fresh temporary one)")
    parser.add_argument("--ocr", action="store_true", help="index with --ocr")
    parser.add_argument("--db-url", help="index into this database (PostgreSQL) instead")
    args = parser.parse_args()

    library = args.library or tempfile.mkdtemp(prefix="mmsearch-bench-")
    command = [sys.executable, "-m", "mmsearch", "index", args.folder, "--json"]
    command += ["--library", library, "--model", args.model]
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    command += ["--ocr"] if args.ocr else []
    command += ["--db-url", args.db_url] if args.db_url else []
    started = time.monotonic()
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak: dict[str, int] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for key, value in _tree_memory(run.pid).items():
                peak[key] = max(peak.get(key, 0), value)
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = run.communicate()
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    if run.returncode != 0:
        sys.exit(f"mmsearch index failed ({run.returncode}): {err.strip()}")
    summary = json.loads(out)
    files = summary["added"] + summary["updated"] + summary["unchanged"] + summary["skipped_total"]
    print(
        json.dumps(
            {
                "folder": args.folder,
                "model": args.model,
                "cpus": os.cpu_count(),
                "files": files,
                "indexed": summary["added"] + summary["updated"] + summary["unchanged"],
                "reused": summary["reused"],
                "skipped": summary["skipped"],
                "seconds": round(seconds, 1),
                "files_per_second": round(files / seconds, 1),
                **{f"peak_{key}_mb": round(value / 2**20) for key, value in sorted(peak.items())},
                "library": library,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
