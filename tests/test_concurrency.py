"""Several processes on one library: readers during a write, and a second writer."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from indexer import index_paths
from mmsearch import TextRecord, open_library
from mmsearch.errors import LibraryBusyError
from tests.conftest import BOTH_BACKENDS


def _mmsearch(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mmsearch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _flock_holder(lock_file) -> subprocess.Popen:
    """A process holding ``lock_file``'s exclusive flock (as a writer does) until its stdin gets
    a line; read its first line ("locked") before relying on it."""
    code = (
        "import sys, fcntl, os; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.readline()"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, str(lock_file)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.fixture
def lock_holder(tmp_path, tiny_model):
    """Another process that holds the library's writer lock until told to stop."""
    lib_dir = tmp_path / "lib"
    open_library(lib_dir, model=str(tiny_model)).close()
    code = textwrap.dedent(
        f"""
        import sys
        from mmsearch import open_library
        with open_library({str(lib_dir)!r}) as lib, lib.writing():
            print("locked", flush=True)
            sys.stdin.readline()
        """
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    yield lib_dir, holder
    holder.communicate("done\n", timeout=30)


def test_second_writer_fails_clearly_and_changes_nothing(lock_holder, cli, photos, tiny_model):
    lib_dir, holder = lock_holder
    result = cli("index", str(photos), library_dir=lib_dir)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: library {lib_dir} is being written by another mmsearch process "
        f"(pid {holder.pid}); wait for it to finish and try again (searching works meanwhile)"
    )
    with open_library(lib_dir, model=str(tiny_model), create=False) as lib:
        assert lib.info().images == 0
        with pytest.raises(LibraryBusyError):
            lib.add_texts("c", [TextRecord("a red circle")])


def test_lock_is_released_when_the_writer_is_killed(lock_holder, tiny_model, photos):
    lib_dir, holder = lock_holder
    holder.kill()
    holder.wait()
    with open_library(lib_dir, model=str(tiny_model)) as lib:
        assert index_paths(lib, [photos], workers=0).added == 27


@BOTH_BACKENDS
def test_readers_see_whole_batches_while_an_index_run_writes(tmp_path, tiny_model, photos, backend):
    lib_dir = tmp_path / "lib"
    with open_library(lib_dir, model=str(tiny_model), db_url=backend) as lib:
        index_paths(lib, [photos / "red_circle_0.png"], workers=0)  # something to search
    writer = _mmsearch(
        "index", str(photos), "--library", str(lib_dir), "--model", str(tiny_model),
        "--batch-size", "4", "--workers", "0",
    )  # fmt: skip
    seen_counts, searches = set(), 0
    names = {p.name for p in photos.iterdir()}
    with open_library(lib_dir, create=False) as reader:
        while writer.poll() is None or searches == 0:
            count = reader.info().images
            seen_counts.add(count)
            hits = reader.search_text("a blue square", k=30)
            assert len({h.path for h in hits}) == len(hits)
            assert {h.path.rsplit("/", 1)[-1] for h in hits} <= names
            searches += 1
            time.sleep(0.01)
    out, err = writer.communicate()
    assert writer.returncode == 0, err
    # One image to start with, then the rest in whole batches of four (the last one short).
    assert seen_counts <= {1, 5, 9, 13, 17, 21, 25, 27}, seen_counts
    assert searches > 1
    assert len(seen_counts) > 2  # the reader really ran while batches were landing
    with open_library(lib_dir, create=False) as reader:
        assert reader.info().images == 27


def test_readers_use_the_saved_index_while_another_process_writes(tmp_path, tiny_model, photos):
    """A reader whose index file is behind the database does not rebuild it while a writer is
    at work (that writer saves it soon, and a rebuild per query would cost k-means each time);
    once nobody writes, the next query rebuilds."""
    from mmsearch.checking import check_library
    from mmsearch.index.faiss_index import FaissIndex
    from mmsearch.records import ImageRecord

    lib_dir = tmp_path / "lib"
    with open_library(lib_dir, model=str(tiny_model)) as lib:
        index_paths(lib, [photos / "red_circle_0.png"], workers=0)
    saved = FaissIndex.read_header(lib_dir / "images.faiss")
    writer = open_library(lib_dir, create=False)
    copy = writer.image_vectors([1])[1]
    writer.images.put_images([ImageRecord("/elsewhere/copy.png", 1, 1, 8, 8, "PNG")], copy[None])
    # The database has the copy; the writer's change to the index file is still pending.
    holder = _flock_holder(lib_dir / "write.lock")
    try:
        assert holder.stdout.readline().strip() == "locked"
        with open_library(lib_dir, create=False) as reader:
            paths = [h.path for h in reader.search_text("a red circle", k=5)]
            assert "/elsewhere/copy.png" not in paths and len(paths) == 1
            assert FaissIndex.read_header(lib_dir / "images.faiss") == saved
            holder.communicate("done\n", timeout=30)
            paths = [h.path for h in reader.search_text("a red circle", k=5)]
            assert "/elsewhere/copy.png" in paths  # nobody writing: rebuilt from the database
    finally:
        holder.kill()
        holder.wait()
    writer.close()
    with open_library(lib_dir, create=False) as lib:
        assert check_library(lib) == [] and lib.info().images == 2


def test_a_reader_asking_whether_someone_writes_never_makes_a_writer_fail(tmp_path):
    """held_elsewhere takes a shared lock for an instant; a writer starting meanwhile waits it
    out instead of reporting the library busy."""
    import threading

    from mmsearch.storage.writer_lock import WriterLock

    tmp_path.mkdir(exist_ok=True)
    reader, writer = WriterLock(tmp_path), WriterLock(tmp_path)
    assert reader.held_elsewhere() is False  # no lock file yet
    with writer:
        assert writer.held_elsewhere() is False  # its own lock
    stop, failures = threading.Event(), []

    def probe():
        while not stop.is_set():
            reader.held_elsewhere()

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for _ in range(200):
            try:
                with writer:
                    pass
            except LibraryBusyError as error:
                failures.append(error)
    finally:
        stop.set()
        prober.join()
    assert failures == []
    holder = _flock_holder(tmp_path / "write.lock")
    assert holder.stdout.readline().strip() == "locked"
    assert reader.held_elsewhere() is True
    holder.communicate("done\n", timeout=30)
    assert reader.held_elsewhere() is False
