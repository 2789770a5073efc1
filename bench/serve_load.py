"""Load test of `mmsearch serve` on loopback: N concurrent clients for a fixed time.

    python bench/serve_load.py --library LIB [--clients 8] [--seconds 20]

Starts a real server process on a free port, waits until it answers, then runs N client
threads that each send text searches (from a fixed list, so the text tower does real work) back
to back for the given time; then thumbnails the same way. Prints requests, errors, throughput
and p50/p99 latency per kind as JSON. The warm latency of one client alone is measured first.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

QUERIES = [
    "a red flag", "a star", "a road sign", "fruit", "a bird", "a house", "a car",
    "a map of a country", "a musical instrument", "a cartoon face", "a tree", "food",
]  # fmt: skip


def _fetch(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
    return time.perf_counter() - started


def _run(urls: list[str], clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(offset: int) -> None:
        n = offset
        while time.monotonic() < stop:
            try:
                took = _fetch(urls[n % len(urls)])
                with lock:
                    latencies.append(took)
            except OSError:
                with lock:
                    errors[0] += 1
            n += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    ordered = sorted(latencies)
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": len(latencies),
        "errors": errors[0],
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(ordered), 1) if ordered else None,
        "p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 1) if ordered else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", required=True)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-m", "mmsearch", "serve", "--library", args.library, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline()
        if not line.startswith("serving "):
            sys.exit(f"the server did not start: {server.stderr.read()}")
        base = line.split(" on ")[1].split()[0].rstrip("/")
        searches = [f"{base}/api/search?q={urllib.parse.quote(q)}&k=20" for q in QUERIES]
        hits = json.loads(urllib.request.urlopen(searches[0], timeout=60).read())
        thumbnails = [f"{base}/api/thumbnail/{h['id']}" for h in hits if h["thumbnail"]]
        _run(searches, 1, 1.0)  # warm up: caches, first thumbnails
        _run(thumbnails, 1, 1.0)
        report = {
            "warm_search_one_client": _run(searches, 1, min(5.0, args.seconds)),
            "search": _run(searches, args.clients, args.seconds),
            "thumbnail": _run(thumbnails, args.clients, args.seconds / 2),
        }
        print(json.dumps(report, indent=2))
    finally:
        server.terminate()
        server.communicate(timeout=30)


if __name__ == "__main__":
    main()
