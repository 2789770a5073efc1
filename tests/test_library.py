"""The library API: the database is the truth, FAISS indexes follow it."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from indexer import index_paths
from mmsearch import open_library
from mmsearch.errors import LibraryError, ModelMismatchError
from mmsearch.index.faiss_index import FaissIndex


def test_python_api_round_trip(library, photos):
    hits = library.search_text("a green triangle", k=3)
    assert [h.path.split("/")[-1][:14] for h in hits] == ["green_triangle"] * 3
    assert hits[0].width == 48 and hits[0].height == 48


def test_stale_index_is_rebuilt_not_trusted(library, tmp_path, tiny_model, photos):
    index_file = library.index_path("images")
    saved = FaissIndex.load(index_file)
    assert saved.generation > 0 and len(saved) == 27
    # An index file from an older state: it holds 27 vectors but the database has moved on.
    old_bytes = index_file.read_bytes()
    library.images.remove_images([str(photos / "red_circle_0.png")])
    library.close()
    index_file.write_bytes(old_bytes)

    reopened = open_library(tmp_path / "lib")
    paths = [h.path for h in reopened.search_text("a red circle", k=50)]
    assert str(photos / "red_circle_0.png") not in paths and len(paths) == 26
    assert FaissIndex.load(index_file).generation == saved.generation + 1
    reopened.close()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: p.unlink(), id="deleted"),
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[:100]), id="truncated"),
        pytest.param(lambda p: p.write_bytes(b"garbage"), id="garbage"),
    ],
)
def test_damaged_index_file_is_rebuilt(library, tmp_path, damage):
    library.close()
    damage(library.index_path("images"))
    reopened = open_library(tmp_path / "lib")
    assert len(reopened.search_text("a blue circle", k=5)) == 5
    assert len(FaissIndex.load(reopened.index_path("images"))) == 27
    reopened.close()


def test_ids_are_stable_across_updates(library, photos):
    before = {h.path: h.id for h in library.search_text("a blue square", k=27)}
    target = photos / "blue_square_0.png"
    target.write_bytes(target.read_bytes())  # touched: new mtime, same picture
    index_paths(library, [photos], workers=0)
    after = {h.path: h.id for h in library.search_text("a blue square", k=27)}
    assert after == before


def test_model_mismatch_from_python(library, tmp_path):
    library.close()
    with pytest.raises(ModelMismatchError, match="was built with model"):
        open_library(tmp_path / "lib", model="clipart-mini")


def test_a_retrained_model_of_the_same_name_is_named_as_such(tmp_path, tiny_model, photos):
    model = tmp_path / "my-model"
    shutil.copytree(tiny_model, model)
    lib = open_library(tmp_path / "lib", model=str(model))
    index_paths(lib, [photos / "blue_square_0.png"], workers=0)
    lib.close()
    weights = model / "open_clip_pytorch_model.bin"
    state = torch.load(weights, map_location="cpu", weights_only=True)
    state["logit_scale"] = state["logit_scale"] + 1.0  # "retrained": same path, other weights
    torch.save(state, weights)
    with pytest.raises(ModelMismatchError) as raised:
        open_library(tmp_path / "lib", model=str(model))
    message = str(raised.value)
    assert f"built with other weights of model {model} (sha256:" in message
    assert "the model was retrained" in message and "new --library" in message


def test_open_missing_library_without_create(tmp_path):
    with pytest.raises(LibraryError, match="no library at"):
        open_library(tmp_path / "none", create=False)


def test_library_path_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(LibraryError, match="is a file, not a folder"):
        open_library(tmp_path / "file")


def test_vectors_are_stored_in_the_database(library):
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from mmsearch.storage.schema import ImageRow

    with Session(library.engine) as session:
        blobs = session.execute(select(ImageRow.embedding)).scalars().all()
    vectors = np.stack([np.frombuffer(b, dtype=np.float32) for b in blobs])
    assert vectors.shape == (27, 64)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_library_files_are_as_readable_as_the_umask_says(cli, photos):
    """A web server running as another user reads the index and the text tower like the
    database: files written through a temporary name do not stay private (mkstemp's 0600)."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        assert cli("index", str(photos)).exit_code == 0
    finally:
        os.umask(old)
    mode = lambda path: stat.S_IMODE(path.stat().st_mode)  # noqa: E731
    assert mode(cli.library / "images.faiss") == mode(cli.library / "library.db") == 0o644
    assert mode(cli.library / "text_tower") == 0o755
    assert mode(cli.library / "text_tower" / "meta.json") == 0o644
