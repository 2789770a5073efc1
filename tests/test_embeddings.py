"""``mmsearch export-embeddings`` / ``import-embeddings``: Parquet shards out of one library and
into another, real pyarrow files, the real CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.helpers.videos import BLACK, Scene, make_video

pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture
def exported(cli, photos, tmp_path):
    """The held-out shapes and a video of three of them, indexed and exported in shards of 10."""
    shapes = sorted(photos.glob("*.png"))[:3]
    make_video(photos / "clip.mp4", [Scene(BLACK, 1), *(Scene(p, 1.5) for p in shapes)])
    assert cli("index", str(photos)).exit_code == 0
    out = tmp_path / "shards"
    result = cli("export-embeddings", "--parquet", str(out), "--shard-rows", "10", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"rows": 28, "shards": 3, "skipped_shards": 0}
    return out


def _held(cli, library) -> dict:
    """path → (content hash, vector) of what a library holds, and its moments."""
    from mmsearch import open_library

    with open_library(library, create=False) as lib:
        ids = lib.images.paths()
        vectors = lib.images.image_vectors(list(ids))
        moments = lib.images.moments_of(list(ids))
        state = {path: vectors[i] for i, path in ids.items()}
        return state, {ids[i]: m for i, m in moments.items()}


def test_a_library_exported_and_imported_answers_as_the_original(cli, photos, exported, tmp_path):
    other = tmp_path / "other"
    result = cli("import-embeddings", str(exported), "--json", library_dir=other)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"rows": 28, "shards": 3, "skipped_shards": 0}
    (vectors, moments), (got, got_moments) = _held(cli, cli.library), _held(cli, other)
    assert got.keys() == vectors.keys()
    for path, vector in vectors.items():
        np.testing.assert_array_equal(got[path], vector)
    (times, frames), (got_times, got_frames) = (
        moments[str(photos / "clip.mp4")],
        got_moments[str(photos / "clip.mp4")],
    )
    np.testing.assert_array_equal(got_times, times)
    np.testing.assert_array_equal(got_frames, frames)
    same = [cli("search", "a red circle", "-k", "5", "--json", library_dir=lib).stdout
            for lib in (cli.library, other)]  # fmt: skip
    assert [h["path"] for h in json.loads(same[0])] == [h["path"] for h in json.loads(same[1])]
    assert cli("check", library_dir=other).exit_code == 0
    # Indexing the photos into the imported library encodes nothing: they are all there.
    again = json.loads(cli("index", str(photos), "--json", library_dir=other).stdout)
    assert (again["added"], again["updated"], again["unchanged"]) == (0, 0, 28)
    assert again["metadata_read"] == 28  # what Parquet does not carry is read from the files


def test_photos_that_moved_are_imported_under_their_new_paths(cli, photos, exported, tmp_path):
    moved = tmp_path / "nas" / "photos"
    shutil.copytree(photos, moved)  # new mtimes: the content hash recognises them
    other = tmp_path / "other"
    result = cli("import-embeddings", str(exported), "--map", f"{photos}={moved}",
                 library_dir=other)  # fmt: skip
    assert result.exit_code == 0, result.output
    again = json.loads(cli("index", str(moved), "--json", library_dir=other).stdout)
    assert again["added"] == 0 and again["removed"] == 0
    assert again["updated"] + again["unchanged"] == 28 and again["reused"] == again["updated"]


def test_an_interrupted_export_carries_on(cli, exported):
    shards = sorted(exported.glob("part-*.parquet"))
    shards[-1].unlink()  # the run was killed while writing the last one...
    leftover = exported / "part-000000000021.parquet.4194303-0123456789abcdef.tmp"
    leftover.write_bytes(b"PAR1 half")  # ...here, as a process that is gone
    result = cli("export-embeddings", "--parquet", str(exported), "--shard-rows", "10", "--json")
    assert json.loads(result.stdout) == {"rows": 8, "shards": 1, "skipped_shards": 2}
    assert sorted(exported.glob("part-*.parquet")) == shards and not leftover.exists()
    rows = sum(pq.read_metadata(s).num_rows for s in shards)
    assert rows == 28


def test_vectors_of_another_model_are_refused(cli, exported, tmp_path):
    result = cli("import-embeddings", str(exported), "--model", "clipart-mini",
                 model=False, library_dir=tmp_path / "other")  # fmt: skip
    assert result.exit_code == 1
    assert "holds vectors of model" in result.stderr and "not comparable" in result.stderr


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "model.json").unlink(), "has no model.json"),
        (lambda d: (d / "part-000000000001.parquet").write_bytes(b"nope"), "is not a Parquet file"),
        (lambda d: _rewrite(d, lambda t: t.drop_columns(["vector"])), "lacks the column(s) vector"),
        (lambda d: _rewrite(d, _scaled_vectors), "must be finite unit vectors"),
    ],
    ids=["no-model", "not-parquet", "no-vector-column", "not-unit-vectors"],
)
def test_bad_shards_are_clear_errors(cli, exported, tmp_path, damage, message):
    damage(exported)
    result = cli("import-embeddings", str(exported), library_dir=tmp_path / "other")
    assert result.exit_code == 1 and message in result.stderr, result.stderr


def _rewrite(folder, change) -> None:
    path = folder / "part-000000000001.parquet"
    pq.write_table(change(pq.read_table(path)), path)


def _scaled_vectors(table):
    import pyarrow as pa

    vectors = np.asarray(table["vector"].to_pylist(), np.float32) * 2
    dim = vectors.shape[1]
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim)
    return table.set_column(table.schema.get_field_index("vector"), "vector", column)
