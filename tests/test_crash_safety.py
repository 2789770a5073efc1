"""Killing a real ``mmsearch index`` at random moments never leaves a library that answers wrong.

After every SIGKILL (sent to the whole process group: the indexer and its decoder workers) the
library must open, answer a query with hits that are all real items scored with their stored
vectors, and pass ``mmsearch check`` once that query has refreshed the derived index. After the
kills, one uninterrupted run must reach exactly the state a clean run produces.

``MMSEARCH_KILLS=200 pytest tests/test_crash_safety.py`` runs a longer campaign (RELIABILITY.md).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mmsearch import open_library
from mmsearch.checking import check_library
from mmsearch.imaging.fingerprint import content_hash
from mmsearch.temporary import temporary_name
from tests.conftest import BOTH_BACKENDS
from tests.helpers import shapes
from tests.helpers.library_state import held, stored_count
from tests.helpers.videos import BLACK, Scene, make_video

KILLS = int(os.environ.get("MMSEARCH_KILLS", "8"))


@pytest.fixture
def folder(tmp_path):
    """54 drawings, two broken files (skip records get written too), a duplicate and two
    videos of drawings (their moments are written with their rows)."""
    root = tmp_path / "photos"
    shapes.make_set(root / "a", per_kind=3, seed=11)
    shapes.make_set(root / "b", per_kind=3, seed=12)
    _video(root / "a" / "clip.mp4", sorted((root / "a").glob("*.png"))[:3])
    _video(root / "b" / "clip.mkv", sorted((root / "b").glob("*.png"))[3:7])
    (root / "b" / "truncated.png").write_bytes((root / "a" / "red_circle_0.png").read_bytes()[:60])
    (root / "b" / "random.jpg").write_bytes(random.Random(0).randbytes(3000))
    (root / "b" / "duplicate.png").write_bytes((root / "a" / "blue_square_1.png").read_bytes())
    return root


def _video(path, pictures) -> None:
    make_video(path, [Scene(BLACK, 1), *(Scene(p, 1.5) for p in pictures)], size=(96, 96))


def _churn(folder, rng: random.Random, round_: int) -> None:
    """A day in a photo folder: files edited, moved, deleted and added (work for the indexer)."""
    files = sorted(p for p in folder.rglob("*.png") if p.name != "truncated.png")
    rng.shuffle(files)
    edited, moved, deleted = files[:12], files[12:15], files[15:18]
    for path in edited:
        shapes.draw(rng.choice(list(shapes.COLOURS)), rng.choice(shapes.SHAPES), rng).save(path)
    (folder / "moved").mkdir(exist_ok=True)
    for path in moved:
        path.rename(folder / "moved" / f"{path.stem}-{round_}.png")
    for path in deleted:
        path.unlink()
    (folder / "new").mkdir(exist_ok=True)
    for n in range(6):
        picture = shapes.draw(rng.choice(list(shapes.COLOURS)), rng.choice(shapes.SHAPES), rng)
        picture.save(folder / "new" / f"{round_}-{n}.png")
    _video(folder / "new" / f"{round_}.mp4", rng.sample(sorted(folder.glob("new/*.png")), 3))


def _start_index(folder, library, model, db_url=None) -> subprocess.Popen:
    """An index run in its own process; the first one on ``db_url`` (PostgreSQL) is given it."""
    server = ["--db-url", db_url] if db_url and not (library / "library.json").exists() else []
    return subprocess.Popen(
        [
            sys.executable, "-m", "mmsearch", "index", str(folder), "--library", str(library),
            "--model", str(model), "--batch-size", "4", "--workers", "2", *server,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a shell job
        # Ctrl-C as in a terminal, even when pytest runs as a background job (`make test &`),
        # whose children inherit SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def _finish(run: subprocess.Popen) -> None:
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err


def _up_to_date(library_dir) -> int:
    """How many stored images match their file's current content (progress at the kill)."""
    images = held(library_dir)["images"].items()
    return sum(os.path.exists(p) and content_hash(p) == digest for p, (digest, _) in images)


def _assert_answers_consistently(library_dir, model) -> int:
    with open_library(library_dir, model=str(model), create=False) as lib:
        now = held(library_dir)
        state = now["images"]
        if state:
            query = lib.encoder.encode_texts(["a red circle"])[0]
            hits = lib.search_text("a red circle", k=len(state) + 5)
            assert len(hits) == len(state)
            for hit in hits:
                _, vector = state[hit.path]
                if hit.path in now["moments"]:  # a video: its best moment's score
                    expected = float((now["moments"][hit.path][1] @ query).max())
                else:
                    expected = float(vector @ query)
                assert hit.score == pytest.approx(expected, abs=1e-4)
        assert check_library(lib) == []
        return len(state)


@pytest.mark.slow
@BOTH_BACKENDS
def test_sigkill_at_random_moments(folder, tmp_path, tiny_model, backend):
    """Index runs killed at random moments of a changing folder, on either backend (on
    PostgreSQL the server, not a file, holds the writer's lock and drops it with the killed
    connection): each leaves a library that answers consistently, and the last run ends where
    one whole run on SQLite does."""
    library = tmp_path / "killed"
    started = time.monotonic()
    _finish(_start_index(folder, library, tiny_model, backend))
    duration = time.monotonic() - started
    rng = random.Random(1)
    stored_at_kill = []
    for round_ in range(KILLS):
        _churn(folder, rng, round_)
        run = _start_index(folder, library, tiny_model)
        time.sleep(rng.uniform(0.1, 1.0) * duration)
        os.killpg(run.pid, signal.SIGKILL)
        run.communicate()
        _assert_answers_consistently(library, tiny_model)
        files = sum(1 for p in folder.rglob("*.png") if p.name != "truncated.png")
        stored_at_kill.append(f"{_up_to_date(library)}/{files}")
    print(f"images up to date after each kill: {', '.join(stored_at_kill)}")

    _finish(_start_index(folder, library, tiny_model))
    reference = tmp_path / "reference"
    _finish(_start_index(folder, reference, tiny_model))
    expected, got = held(reference), held(library)
    assert got["skipped"] == expected["skipped"] and len(expected["skipped"]) == 2
    assert got["images"].keys() == expected["images"].keys()
    for path, (digest, vector) in expected["images"].items():
        # A hash is stored where a copy was possible, which depends on the files a run met;
        # where stored, it is the file's.
        assert {digest, got["images"][path][0]} <= {None, content_hash(path)}
        np.testing.assert_allclose(got["images"][path][1], vector, atol=1e-5, err_msg=path)
    assert got["moments"].keys() == expected["moments"].keys() and len(expected["moments"]) > 2
    for path, (times, vectors) in expected["moments"].items():
        np.testing.assert_array_equal(got["moments"][path][0], times)
        np.testing.assert_allclose(got["moments"][path][1], vectors, atol=1e-5)
    _assert_answers_consistently(library, tiny_model)


@pytest.mark.slow
def test_ctrl_c_stops_after_the_batch_and_says_how_to_resume(folder, tmp_path, tiny_model):
    shapes.make_set(folder / "c", per_kind=12, seed=13)  # 108 more: a run long enough to stop
    library = tmp_path / "lib"
    run = _start_index(folder, library, tiny_model)
    while stored_count(library) == 0 and run.poll() is None:  # Ctrl-C once the first batch is in
        time.sleep(0.01)
    os.killpg(run.pid, signal.SIGINT)  # what a terminal sends the whole job on Ctrl-C
    _, err = run.communicate(timeout=120)
    if run.returncode == 0:
        pytest.skip("the run finished before Ctrl-C arrived")
    assert run.returncode == 130, err
    assert err.startswith("Interrupted: ") and err.rstrip().endswith(
        "images stored. Run the same command again to carry on where it stopped."
    ), err
    stored = _assert_answers_consistently(library, tiny_model)
    assert f"Interrupted: {stored} images stored." in err
    _finish(_start_index(folder, library, tiny_model))
    assert _assert_answers_consistently(library, tiny_model) == 165  # 162, the duplicate, 2 videos


def test_what_a_killed_writer_left_half_written_is_removed(tmp_path, tiny_model):
    """Temporaries of a process that is gone (a killed save, rebuild or export) are removed by
    the next writer; another live process's are left alone."""

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lib_dir = tmp_path / "lib"
    with open_library(lib_dir, model=str(tiny_model)):
        pass
    leftovers = [
        lib_dir / f"images.faiss.{dead.pid}-0123456789abcdef.tmp",
        lib_dir / f"text_tower.{dead.pid}-fedcba9876543210.tmp",  # a folder
    ]
    leftovers[0].write_bytes(b"half an index")
    leftovers[1].mkdir()
    (leftovers[1] / "meta.json").write_text("{}")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        in_progress = lib_dir / f"images.faiss.{live.pid}-00112233aabbccdd.tmp"
        in_progress.write_bytes(b"being written")
        mine = temporary_name(lib_dir / "images.faiss")
        mine.write_bytes(b"this process's")
        with open_library(lib_dir, create=False):
            pass  # closing flushes
        assert not any(p.exists() for p in leftovers)
        assert in_progress.exists() and mine.exists()
    finally:
        live.kill()
        live.wait()
