"""Vector indexes: an exact scan while small, IVF cells as the collection grows, files that map."""

from __future__ import annotations

import numpy as np
import pytest

from mmsearch import open_library
from mmsearch.checking import check_library
from mmsearch.index import derived as derived_indexes
from mmsearch.index import faiss_index as vi
from mmsearch.index.faiss_index import FaissIndex, cells_for
from mmsearch.records import ImageRecord


def clustered(count: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit vectors around 200 random centres: structure like image embeddings have."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((200, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, 200, count)] + 0.8 * rng.standard_normal(
        (count, dim), dtype=np.float32
    )
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def exact_top(vectors: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """The brute-force answer: the ids of the k best inner products."""
    return ids[np.argsort(-(vectors @ query))[:k]]


@pytest.fixture(scope="module")
def large():
    """An index of 40,000 vectors (past FLAT_LIMIT, so IVF), their ids and the vectors."""
    vectors = clustered(40_000, 64)
    ids = np.arange(40_000, dtype=np.int64) * 3 + 7  # item ids are not positions
    chunks = lambda: ((ids[s : s + 6000], vectors[s : s + 6000]) for s in range(0, 40_000, 6000))  # noqa: E731
    return FaissIndex.build(64, 40_000, chunks, generation=5), ids, vectors


def test_kind_of_index_follows_the_collection_size():
    assert cells_for(vi.FLAT_LIMIT - 1) == 0
    assert cells_for(vi.FLAT_LIMIT) > 0
    assert cells_for(100_000) == 1024
    assert cells_for(1_000_000) == 4096
    # Never more cells than the vectors can train (FAISS wants about 40 per cell).
    assert all(cells_for(n) * vi.TRAINING_POINTS_PER_CELL <= n for n in (40_000, 50_000, 10**7))


def test_ivf_search_recall_and_exact_mode(large):
    index, ids, vectors = large
    assert index.cells == 512 and len(index) == 40_000 and index.trained_on == 40_000
    queries = clustered(50, 64, seed=1)  # not in the index
    recalls = []
    for query in queries:
        truth = exact_top(vectors, ids, query, 10)
        _, found = index.search(query, 10)
        recalls.append(len(set(found[0]) & set(truth)) / 10)
        scores, exact = index.search(query, 10, exact=True)
        assert list(exact[0]) == list(truth)
        np.testing.assert_allclose(scores[0], np.sort(vectors @ query)[::-1][:10], rtol=1e-5)
    assert np.mean(recalls) >= 0.9


def test_filtered_ivf_search_finds_allowed_items_far_from_the_query(large):
    index, ids, vectors = large
    query = clustered(1, 64, seed=2)[0]
    worst = ids[np.argsort(vectors @ query)[:2]]  # the two least similar items of all
    _, found = index.search(query, 10, allowed=worst)
    assert sorted(i for i in found[0] if i >= 0) == sorted(worst)


def test_saved_index_maps_read_only_and_loads_writable(large, tmp_path):
    index, ids, vectors = large
    path = tmp_path / "images.faiss"
    index.save(path)
    assert FaissIndex.read_header(path) == {
        "generation": 5,
        "dim": 64,
        "count": 40_000,
        "trained_on": 40_000,
    }
    query = clustered(1, 64, seed=3)
    mapped = FaissIndex.load(path, mapped=True)
    assert mapped.mapped and mapped.cells == 512
    np.testing.assert_array_equal(mapped.search(query, 10)[1], index.search(query, 10)[1])
    with pytest.raises(RuntimeError, match="read-only"):
        mapped.add(np.array([1]), query)  # FAISS itself would abort the process
    stored_ids, stored = mapped.items()
    order = np.argsort(stored_ids)
    np.testing.assert_array_equal(stored_ids[order], ids)
    np.testing.assert_array_equal(stored[order], vectors)

    writable = FaissIndex.load(path)
    writable.remove(ids[:100])
    writable.add(np.array([1]), query)
    assert len(writable) == 40_000 - 99
    assert writable.search(query, 1)[1][0][0] == 1


def test_file_built_cell_by_cell_is_what_faiss_writes(large, tmp_path):
    _, ids, vectors = large
    chunks = lambda: ((ids[s : s + 7000], vectors[s : s + 7000]) for s in range(0, 40_000, 7000))  # noqa: E731
    FaissIndex.build(64, 40_000, chunks, generation=5).save(tmp_path / "memory.faiss")
    streamed = FaissIndex.build_file(tmp_path / "streamed.faiss", 64, 40_000, chunks, generation=5)
    assert streamed.mapped and streamed.cells == 512
    # Byte for byte FAISS's own serialisation (cells in the order vectors came) and trailer.
    assert (tmp_path / "streamed.faiss").read_bytes() == (tmp_path / "memory.faiss").read_bytes()
    assert [p.name for p in tmp_path.iterdir()] != [] and not list(tmp_path.glob(".*"))


def test_changes_are_written_cell_by_cell_as_faiss_would_make_them(large, tmp_path):
    index, ids, vectors = large
    path = tmp_path / "images.faiss"
    index.save(path)
    changes = vi.IndexChanges()
    fresh = clustered(3000, 64, seed=7)
    changes.add(np.arange(3000) + 10**6, fresh)  # new items
    changes.remove(ids[:500])  # removed items
    changes.add(ids[500:600], fresh[:100])  # items re-indexed with a new vector
    changes.remove(np.arange(10) + 10**6)  # added, then removed before the write
    assert len(changes) == 3000 + 600  # ids involved

    mapped = FaissIndex.load(path, mapped=True)
    written = mapped.with_changes(path, changes, generation=6)
    assert written.mapped and written.generation == 6 and written.cells == 512

    expected = FaissIndex.load(tmp_path / "images.faiss")  # the written file
    reference = FaissIndex(64, index=index._index)  # the in-memory original, changed by FAISS
    reference.remove(ids[:600])
    reference.add(np.arange(10, 3000) + 10**6, fresh[10:])
    reference.add(ids[500:600], fresh[:100])
    assert len(written) == len(reference) == 40_000 - 500 + 2990
    got, want = expected.items(), reference.items()
    np.testing.assert_array_equal(np.sort(got[0]), np.sort(want[0]))
    by_id = dict(zip(want[0].tolist(), want[1], strict=True))
    np.testing.assert_array_equal(got[1], np.stack([by_id[i] for i in got[0].tolist()]))
    for query in clustered(20, 64, seed=8):
        np.testing.assert_array_equal(
            written.search(query, 10, exact=True)[1], reference.search(query, 10, exact=True)[1]
        )
    assert FaissIndex.read_header(path)["count"] == len(reference)


def test_changes_to_a_flat_index(tmp_path):
    vectors = clustered(500, 32)
    index = FaissIndex.build(32, 400, lambda: [(np.arange(400), vectors[:400])], generation=1)
    index.save(tmp_path / "texts.faiss")
    changes = vi.IndexChanges()
    changes.remove(np.arange(50))
    changes.add(np.arange(400, 500), vectors[400:])
    mapped = FaissIndex.load(tmp_path / "texts.faiss", mapped=True)
    written = mapped.with_changes(tmp_path / "texts.faiss", changes, generation=2)
    assert written.cells == 0 and len(written) == 450 and written.generation == 2
    assert sorted(written.items()[0]) == list(range(50, 500))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[:-1], id="trailer-cut"),
        pytest.param(lambda data: data[: len(data) // 2], id="halved"),
        pytest.param(lambda data: b"x" * 40, id="garbage"),
    ],
)
def test_damaged_file_is_not_loaded(large, tmp_path, damage):
    path = tmp_path / "images.faiss"
    large[0].save(path)
    path.write_bytes(damage(path.read_bytes()))
    assert FaissIndex.load(path) is None and FaissIndex.load(path, mapped=True) is None


def test_retraining_follows_growth_and_shrinkage(large):
    index = large[0]
    assert not index.needs_rebuild()
    assert FaissIndex(64, index=None).needs_rebuild() is False  # empty and flat
    grown = FaissIndex(64, index=index._index, trained_on=9_000)  # 40,000 > 4 x 9,000
    shrunk = FaissIndex(64, index=index._index, trained_on=170_000)  # 40,000 < 170,000 / 4
    assert grown.needs_rebuild() and shrunk.needs_rebuild()


def _put_synthetic(lib, start: int, vectors: np.ndarray) -> None:
    records = [
        ImageRecord(f"/synthetic/{start + i:06d}.jpg", 1, 1, 640, 480, "JPEG")
        for i in range(len(vectors))
    ]
    lib.images.put_images(records, vectors)


def test_library_switches_to_ivf_as_it_grows(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setattr(vi, "FLAT_LIMIT", 1000)
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        dim = lib.encoder.dim
        vectors = clustered(2400, dim)
        _put_synthetic(lib, 0, vectors[:900])
        lib.flush()
        assert FaissIndex.load(lib.index_path("images")).cells == 0
        _put_synthetic(lib, 900, vectors[900:])
        lib.flush()  # 2,400 vectors: retrained into cells as it is saved
        saved = FaissIndex.load(lib.index_path("images"))
        assert saved.cells == cells_for(2400) == 32 and saved.trained_on == 2400
        assert check_library(lib) == []

    with open_library(tmp_path / "lib", create=False) as lib:
        query = clustered(1, dim, seed=5)[0]
        stored = lib.image_vectors(list(range(1, 2401)))
        ids = np.array(sorted(stored))
        matrix = np.stack([stored[i] for i in ids])
        truth = exact_top(matrix, ids, query, 10)
        hits = lib.search_text("a red circle", k=10, exact=True)
        assert len(hits) == 10
        exact = lib.searcher.image_hits(query, 10, exact=True)
        assert [h.id for h in exact] == list(truth)
        assert lib._indexes.get("images").mapped  # searches read a memory map
        # A writer rewrites the file (atomically); it never changes a map.
        lib.images.remove_images(["/synthetic/000000.jpg"])
        lib.flush()
        assert len(FaissIndex.load(lib.index_path("images"))) == 2399
        assert check_library(lib) == []


def test_writer_holds_at_most_pending_limit_changes(tmp_path, tiny_model, monkeypatch):
    monkeypatch.setattr(vi, "FLAT_LIMIT", 1000)
    monkeypatch.setattr(derived_indexes, "PENDING_LIMIT", 500)
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        vectors = clustered(2400, lib.encoder.dim)
        _put_synthetic(lib, 0, vectors[:1200])
        lib.flush()
        path = lib.index_path("images")
        assert FaissIndex.read_header(path)["count"] == 1200 and FaissIndex.load(path).cells
        counts = []
        for start in range(1200, 2400, 200):
            _put_synthetic(lib, start, vectors[start : start + 200])
            counts.append(FaissIndex.read_header(path)["count"])
        # Written once 500 ids were pending (after 600), not before and not after each batch.
        assert counts == [1200, 1200, 1800, 1800, 1800, 2400]
        lib.images.remove_images([f"/synthetic/{i:06d}.jpg" for i in range(100)])
        lib.flush()
        assert FaissIndex.read_header(path)["count"] == 2300
        assert check_library(lib) == []


def test_a_failed_index_write_loses_nothing(tmp_path, tiny_model, monkeypatch):
    """The disk fills while pending changes are written: the database has them, the file stays
    behind it, and the next search rebuilds (in memory while the disk stays full)."""
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        vectors = clustered(300, lib.encoder.dim)
        _put_synthetic(lib, 0, vectors[:200])
        lib.flush()

        def full_disk(path, write):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(vi, "_atomic_write", full_disk)
        _put_synthetic(lib, 200, vectors[200:])
        lib.flush()  # no exception: the index is derived
        assert FaissIndex.read_header(lib.index_path("images"))["count"] == 200
        assert len(lib._indexes.get("images")) == 300
        hit = lib.searcher.image_hits(vectors[250], 1, exact=True)[0]
        assert hit.path == "/synthetic/000250.jpg"
        monkeypatch.undo()
        lib.rebuild_index("images")
        assert FaissIndex.read_header(lib.index_path("images"))["count"] == 300
