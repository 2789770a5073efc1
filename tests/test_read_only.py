"""A library that cannot be written (a read-only NAS share, a backup, another user's files):
searches, ``info`` and ``check`` work and say it is read-only; writes get a clear error; and
nothing in the folder changes.

Root writes whatever the file modes say, so as root the commands run as ``nobody`` (setpriv),
the way another user meets the library.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOBODY = 65534


@pytest.fixture
def read_only_library():
    """A small lite0-muse-clipart-memory-jmdict library, then every file and folder in it made
    read-only."""
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv to become another user")
    # Not under pytest's tmp_path: its base folder is private to this user.
    root = Path(tempfile.mkdtemp(prefix="mmsearch-ro-"))
    root.chmod(0o755)
    library = root / "library"
    photos = REPO / "sample_corpus/images/animals/mammals"
    subprocess.run(
        [sys.executable, "-m", "mmsearch", "index", str(photos), "--library", str(library),
         "--model", "lite0-muse-clipart-memory-jmdict", "--workers", "0"],
        check=True, capture_output=True,
    )  # fmt: skip
    for path in [library, *library.iterdir()]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    yield library
    library.chmod(0o755)
    shutil.rmtree(root)


def run(*args: str) -> subprocess.CompletedProcess:
    """The CLI as a user who cannot write the library."""
    become = []
    if os.geteuid() == 0:
        become = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    env = {**os.environ, "HOME": "/tmp", "XDG_CACHE_HOME": "/tmp/nonexistent-cache"}
    return subprocess.run(
        [*become, sys.executable, "-m", "mmsearch", *args],
        capture_output=True, text=True, env=env, cwd="/",
    )  # fmt: skip


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}


@pytest.mark.slow
def test_a_read_only_library_answers_searches_info_and_check(read_only_library):
    before = snapshot(read_only_library)
    lib = ["--library", str(read_only_library)]

    search = run("search", "a dog", "-k", "2", "--json", *lib)
    assert search.returncode == 0, search.stderr
    assert "read-only: new queries are not cached" in search.stderr
    assert "/dogs/" in json.loads(search.stdout)[0]["path"]

    info = run("info", "--json", *lib)
    assert info.returncode == 0, info.stderr
    details = json.loads(info.stdout)
    assert details["read_only"] is True and details["images"] == 6
    assert details["database"] == f"sqlite:///{read_only_library.resolve() / 'library.db'}"

    check = run("check", *lib)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "is consistent (6 images, 0 texts; read-only;" in check.stdout

    assert snapshot(read_only_library) == before  # no -wal, -shm, cache or index file written


@pytest.mark.slow
def test_writing_a_read_only_library_says_why_and_changes_nothing(read_only_library):
    before = snapshot(read_only_library)
    lib = ["--library", str(read_only_library)]
    for args in (
        ["forget", str(REPO / "sample_corpus/images/animals/mammals/dogs")],
        ["index", str(REPO / "sample_corpus/images/food")],
        ["add-texts", str(REPO / "sample_corpus/captions.jsonl"), "--text-field", "caption"],
    ):
        result = run(*args, *lib)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert result.stderr.startswith(
            f"Error: library {read_only_library} is read-only (a read-only mount or folder"
        ), (args, result.stderr)
    assert snapshot(read_only_library) == before
