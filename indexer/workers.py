"""Decoder worker processes: files decoded in parallel, in order, with few in flight.

Workers are spawned, not forked (the parent holds torch's thread pools, which do not survive a
fork), and spawn re-runs the program's main script in each worker unless told otherwise. They
need nothing from it, so they are told otherwise: a script that calls ``index_paths`` at top
level, without ``if __name__ == "__main__":``, works, and workers start without importing what
the script imports.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

from indexer.decode import Decoded, share_known_content, start_worker
from mmsearch.imaging.fingerprint import KnownContent

# Fewer files than this decode in this process: starting workers would cost more.
MIN_FILES_FOR_WORKERS = 16


def decode_all(
    paths: list[str],
    decode: Callable[[str], Decoded],
    workers: int | None,
    window: int,
    known: KnownContent,
) -> Iterator[Decoded]:
    """Decoded files in order, from worker processes, with at most ``window`` in flight."""
    if workers is None:
        workers = os.cpu_count() or 1
    if workers == 0 or len(paths) < MIN_FILES_FOR_WORKERS:
        share_known_content(known)
        try:
            yield from map(decode, paths)
        finally:
            share_known_content(KnownContent())
        return
    # spawn, not fork: the parent holds torch's thread pools, which do not survive a fork.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=start_worker,
        initargs=(known,),
    )
    pending: collections.deque[Future] = collections.deque()
    try:
        with _ctrl_c_ignored(), _main_module_not_rerun():
            # With spawn, the pool starts a worker per task submitted while none is idle, so
            # these start them all, and they inherit Ctrl-C ignored from birth. Set only by their
            # initializer, a Ctrl-C while they imported printed a traceback each.
            for _ in range(workers):
                pool.submit(int)
        for path in paths:
            pending.append(pool.submit(decode, path))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _ctrl_c_ignored():
    """Ctrl-C ignored by this process for the moment (a few milliseconds: a Ctrl-C then is
    lost); only the main thread may change signal handling, elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _main_module_not_rerun():
    """While workers start, the main module says nothing of where it came from: spawn's
    preparation then has no script to run again in each worker (CPython's
    ``multiprocessing.spawn.get_preparation_data`` reads ``__main__.__spec__`` and
    ``__main__.__file__``; with neither, the worker's ``__main__`` stays empty)."""
    main = sys.modules["__main__"]
    saved = {key: vars(main)[key] for key in ("__spec__", "__file__") if key in vars(main)}
    main.__spec__ = None
    vars(main).pop("__file__", None)
    try:
        yield
    finally:
        vars(main).update(saved)
        if "__spec__" not in saved:
            del main.__spec__


def progress_bar(total: int, enabled: bool, what: str = "Indexing"):
    from tqdm import tqdm

    return tqdm(total=total, unit="img", desc=what, disable=not enabled, leave=False)
