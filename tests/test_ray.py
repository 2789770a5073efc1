"""``index --engine ray`` against a real Ray cluster started here: a head node and a second
node, as separate processes on this machine, so decoding tasks and encoder actors run in
worker processes of their own. A distributed run must write the library a local run writes."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SAMPLE_CORPUS
from tests.helpers import shapes
from tests.helpers.library_state import held, stored_count
from tests.helpers.videos import BLACK, Scene, make_video
from tests.test_hostile_input import _hostile_folder

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A cluster on loopback for one test session: no usage reports, no token (Ray 2.60's token
# authentication is for clusters others can reach; the driver here runs without one too).
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


@pytest.fixture(scope="module")
def ray_cluster():
    """A head node (one CPU) and a worker node (one CPU) on loopback; stopped at the end."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are limited
    port = _free_port()
    saved = {key: os.environ.get(key) for key in RAY_ENV}
    os.environ.update(RAY_ENV)
    common = ["--num-cpus=1", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    head = [RAY, "start", "--head", f"--port={port}", "--include-dashboard=false",
            f"--temp-dir={temp}", *common]  # fmt: skip
    address = f"127.0.0.1:{port}"
    try:
        for command in (head, [RAY, "start", f"--address={address}", *common]):
            done = subprocess.run(command, capture_output=True, text=True)
            assert done.returncode == 0, done.stderr[-3000:]
        yield address
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True)
        shutil.rmtree(temp, ignore_errors=True)
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.update({key: value})


@pytest.fixture
def folder(tmp_path):
    """Drawings, a video of some of them, and files that cannot be indexed."""
    root = tmp_path / "photos"
    pairs = shapes.make_set(root, per_kind=2, seed=21)
    make_video(root / "clip.mp4", [Scene(BLACK, 1), *(Scene(p, 1.5) for p, _ in pairs[:3])])
    (root / "truncated.png").write_bytes(pairs[0][0].read_bytes()[:60])
    (root / "notes.mp4").write_text("not a video")
    shutil.copy(pairs[1][0], root / "copy.png")
    return root


def _assert_same(got: dict, expected: dict) -> None:
    assert got["skipped"] == expected["skipped"]
    assert got["images"].keys() == expected["images"].keys()
    for path, (digest, vector) in expected["images"].items():
        assert got["images"][path][0] == digest
        np.testing.assert_allclose(got["images"][path][1], vector, atol=1e-5)
    assert got["moments"].keys() == expected["moments"].keys()
    for path, (times, vectors) in expected["moments"].items():
        np.testing.assert_array_equal(got["moments"][path][0], times)
        np.testing.assert_allclose(got["moments"][path][1], vectors, atol=1e-5)


def test_a_ray_run_writes_the_library_a_local_run_writes(cli, tmp_path, ray_cluster):
    """sample_corpus, the hostile-input folder and a video; then a day of edits, moves,
    deletions and new files, and both runs again."""
    folder = tmp_path / "photos"
    shutil.copytree(SAMPLE_CORPUS / "images", folder)
    _hostile_folder(folder / "hostile")
    drawings = sorted(folder.rglob("*.png"))[:40]
    make_video(folder / "clip.mp4", [Scene(BLACK, 1), *(Scene(p, 1.5) for p in drawings[:3])])
    local, distributed = tmp_path / "local", tmp_path / "ray"
    on_ray = ["--engine", "ray", "--ray-address", ray_cluster]
    for round_ in range(2):
        here = cli("index", str(folder), "--json", library_dir=local)
        assert here.exit_code == 0, here.output
        there = cli("index", str(folder), *on_ray, "--json", library_dir=distributed)
        assert there.exit_code == 0, there.output
        expected, summary = json.loads(here.stdout), json.loads(there.stdout)
        for count in ("added", "updated", "removed", "unchanged", "moved", "videos", "skipped"):
            assert summary[count] == expected[count], count
        if round_ == 0:
            assert summary["added"] == 240 + 11 + 1 and summary["skipped_total"] == 7
        _assert_same(held(distributed), held(local))
        assert cli("check", library_dir=distributed).exit_code == 0
        # A day in the folder: edits, a move, deletions, a new drawing and a new video.
        rng = random.Random(round_)
        for path in drawings[10 * round_ : 10 * round_ + 3]:
            shapes.draw("red", "triangle", rng).save(path)
        drawings[10 * round_ + 4].rename(folder / f"moved-{round_}.png")
        drawings[10 * round_ + 5].unlink()
        shapes.draw("blue", "circle", rng).save(folder / f"new-{round_}.png")
        make_video(folder / f"new-{round_}.mp4", [Scene(drawings[30 + round_], 2)])


def test_a_worker_killed_mid_run_is_replaced_and_nothing_is_lost(
    folder, tmp_path, tiny_model, ray_cluster
):
    shapes.make_set(folder / "more", per_kind=6, seed=22)  # a run long enough to interrupt
    library = tmp_path / "lib"
    run = subprocess.Popen(
        [sys.executable, "-m", "mmsearch", "index", str(folder), "--library", str(library),
         "--model", str(tiny_model), "--engine", "ray", "--ray-address", ray_cluster,
         "--batch-size", "4", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    killed = _kill_a_worker(run)
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    assert killed, "no Ray worker process was seen running the job"
    assert json.loads(out)["added"] == 74
    reference = tmp_path / "reference"
    done = subprocess.run(
        [sys.executable, "-m", "mmsearch", "index", str(folder), "--library", str(reference),
         "--model", str(tiny_model)], capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    _assert_same(held(library), held(reference))


def test_a_driver_killed_mid_run_keeps_what_it_stored_and_the_next_run_converges(
    folder, tmp_path, tiny_model, ray_cluster
):
    shapes.make_set(folder / "more", per_kind=6, seed=23)
    library = tmp_path / "lib"
    command = [sys.executable, "-m", "mmsearch", "index", str(folder), "--library", str(library),
               "--model", str(tiny_model), "--engine", "ray", "--ray-address", ray_cluster,
               "--batch-size", "4"]  # fmt: skip
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while stored_count(library) == 0 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)  # the driver, as a power cut would; the cluster stays
    run.communicate()
    stored = stored_count(library)
    assert 0 < stored < 74, stored
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    reference = tmp_path / "reference"
    local = [sys.executable, "-m", "mmsearch", "index", str(folder), "--library", str(reference),
             "--model", str(tiny_model)]  # fmt: skip
    assert subprocess.run(local, capture_output=True).returncode == 0
    _assert_same(held(library), held(reference))


def _kill_a_worker(run: subprocess.Popen) -> bool:
    """SIGKILL one Ray worker process that runs a decoding task or an encoder actor."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        found = subprocess.run(["pgrep", "-f", "ray::(MapBatches|MapWorker)"],
                               capture_output=True, text=True).stdout.split()  # fmt: skip
        if found:
            time.sleep(0.5)  # let it start on its batch
            try:
                os.kill(int(found[0]), signal.SIGKILL)
            except ProcessLookupError:
                continue
            return True
        time.sleep(0.05)
    return False


def test_an_address_that_does_not_answer_is_a_clear_error_within_seconds(cli, folder, tmp_path):
    started = time.monotonic()
    result = cli("index", str(folder), "--engine", "ray", "--ray-address",
                 f"127.0.0.1:{_free_port()}", library_dir=tmp_path / "lib")  # fmt: skip
    assert result.exit_code == 1
    assert "no Ray cluster answers at 127.0.0.1:" in result.stderr
    assert "ray start --head" in result.stderr
    assert time.monotonic() - started < 15


def test_without_ray_installed_the_error_names_the_extra(folder, tmp_path, tiny_model):
    script = (
        "import sys; sys.modules['ray'] = None\n"  # what a Python without Ray imports
        "from mmsearch.cli import main\n"
        f"sys.argv = ['mmsearch', 'index', {str(folder)!r}, '--engine', 'ray', '--library', "
        f"{str(tmp_path / 'lib')!r}, '--model', {str(tiny_model)!r}]\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 1
    assert "pip install 'mmsearch[ray]'" in done.stderr, done.stderr
