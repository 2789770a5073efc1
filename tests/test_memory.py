"""A towers model's memory of its training pictures: the read, its storage, its fitting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmsearch.encoders import memory
from mmsearch.encoders.memory import Readout, pull, unit
from mmsearch.encoders.registry import resolve_model
from mmsearch.encoders.towers_encoder import HEADS_FILE, Heads, TowersConfig, TowersEncoder
from mmsearch.errors import ModelError
from mmsearch.train.captioned import read_captioned
from mmsearch.train.lit_training import LitConfig, train_towers
from mmsearch.train.memory_fit import fit_memory
from tests.conftest import SAMPLE_CORPUS


def test_a_vector_moves_toward_the_values_of_its_nearest_keys():
    keys = np.eye(3, dtype=np.float32)
    values = np.array([[0, 0, 0, 1], [0, 0, 1, 0], [0, 1, 0, 0]], dtype=np.float32)
    vectors = np.array([[1, 0, 0, 0]], dtype=np.float32)
    query = unit(np.array([[1.0, 0.1, 0.0]]))
    moved = pull(vectors, query, keys, values, Readout(k=1, temperature=0.05, weight=1.0))
    np.testing.assert_allclose(moved, unit(np.array([[1.0, 0, 0, 1]])), atol=1e-6)
    # Two neighbours at a high temperature: nearly an even mix of their values.
    mixed = pull(vectors, query, keys, values, Readout(k=2, temperature=100.0, weight=1.0))
    assert mixed[0, 3] == pytest.approx(mixed[0, 2], rel=0.01) and mixed[0, 1] == 0
    # k beyond the memory's size reads all of it; an inactive readout changes nothing.
    assert pull(vectors, query, keys, values, Readout(k=50, weight=1.0)).shape == (1, 4)
    assert pull(vectors, query, keys, values, Readout()) is vectors


def test_a_key_with_a_count_weighs_as_that_many_keys():
    """A caption that describes three pictures (its value their mean) reads as three keys."""
    keys = unit(np.array([[1.0, 0], [0.9, 0.1]]))
    values = np.array([[0, 1.0], [1.0, 0]], dtype=np.float32)
    query = unit(np.array([[0.95, 0.05]]))
    readout = Readout(k=2, temperature=1.0, weight=1.0)
    vectors = np.zeros((1, 2), np.float32) + 1e-3
    counted = pull(vectors, query, keys, values, readout, counts=np.array([1.0, 3.0]))
    repeated = pull(vectors, query, keys[[0, 1, 1, 1]], values[[0, 1, 1, 1]], Readout(4, 1.0, 1.0))
    np.testing.assert_allclose(counted, repeated, atol=1e-6)


def test_over_all_keys_a_query_sure_of_no_key_is_pulled_less():
    """Weights from the softmax over every key (a classifier's probabilities): a query whose
    largest logit stands out is pulled almost fully; one whose logits are all alike barely."""
    keys = np.eye(4, dtype=np.float32)
    values = np.eye(4, dtype=np.float32)[:, ::-1].copy()
    vectors = np.full((2, 4), 0.5, np.float32)
    queries = np.array([[10.0, 0, 0, 0], [1.0, 0.9, 0.9, 0.9]], np.float32)  # sure; unsure
    readout = Readout(k=1, temperature=1.0, weight=1.0)
    moved = pull(vectors, queries, keys, values, readout, over_all_keys=True)
    renormalised = pull(vectors, queries, keys, values, readout)
    expected_sure = unit(vectors[:1] + (np.exp(10) / (np.exp(10) + 3)) * values[0])
    np.testing.assert_allclose(moved[0], expected_sure[0], atol=1e-6)
    unsure = np.exp(1.0) / (np.exp(1.0) + 3 * np.exp(0.9))  # 0.27
    np.testing.assert_allclose(moved[1], unit(vectors[1:] + unsure * values[0])[0], atol=1e-6)
    # Over the k nearest alone, both would be pulled by the whole weight.
    np.testing.assert_allclose(renormalised[1], unit(vectors[1:] + values[0])[0], atol=1e-6)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small towers model with a memory, trained on 80 drawings of sample_corpus."""
    samples = read_captioned(SAMPLE_CORPUS / "captions.jsonl")[::3][:80]
    folder = tmp_path_factory.mktemp("memory") / "m"
    config = LitConfig(epochs=3, batch_size=32, views=0, dim=64, val_fraction=0.2, seed=3)
    result = train_towers(samples, folder, config)
    return folder, result


def test_training_fits_a_memory_on_the_validation_slice(trained):
    folder, result = trained
    config = TowersConfig.read(folder)
    scores = result.history[-1]
    assert scores["val_R@10_sum_memory"] >= scores["val_R@10_sum_heads"]
    with np.load(folder / HEADS_FILE) as z:
        stored = {k: z[k] for k in z.files}
    if config.image_memory.active:
        # Every training picture is in the memory, the validation slice included: 80 drawings.
        assert stored[memory.IMAGES].shape == (80, 64) and stored[memory.IMAGES].dtype == np.float16
        assert stored[memory.CAPTION_COUNTS].sum() >= 80  # each picture has a caption or more
    else:  # the memory did not help this tiny model on its slice: none is stored
        assert memory.IMAGES not in stored


def test_a_stored_memory_reads_as_the_trained_one(trained, tmp_path):
    """Half precision on disk: the vectors stay within a cosine of 0.999 of full precision."""
    folder, _ = trained
    encoder = TowersEncoder(resolve_model(str(folder)))
    heads = encoder.heads
    heads.image_memory = heads.text_memory = Readout(k=5, temperature=0.05, weight=0.6)
    if memory.IMAGES not in heads.arrays:
        pytest.skip("the tiny model stored no memory")
    texts = encoder.text_features(["a flag", "旗", "a red star"])
    full = heads.texts(texts)
    heads.write(tmp_path / HEADS_FILE)
    config = TowersConfig.read(folder)
    again = Heads.read(tmp_path / HEADS_FILE, config)
    again.image_memory = again.text_memory = heads.text_memory
    assert float((full * again.texts(texts)).sum(axis=1).min()) > 0.999


def test_memory_changes_vectors_and_is_fitted_only_where_it_helps():
    rng = np.random.default_rng(0)
    image_features, text_features = rng.normal(size=(60, 8)), rng.normal(size=(30, 6))
    arrays = {
        "image_mean": np.zeros(8),
        "image_std": np.ones(8),
        "image_w1": rng.normal(size=(8, 4)),
        "image_b1": np.zeros(4),
        "text_w1": rng.normal(size=(6, 4)),
        "text_b1": np.zeros(4),
    }
    heads = Heads(arrays)
    captions = [[i % 30] for i in range(50)]
    fitted = fit_memory(
        heads, image_features[:50], captions, text_features, image_features[50:], captions[:10]
    )
    # Random heads on random features: whichever way it goes, the choice is consistent.
    if fitted.image_memory.active:
        assert fitted.scores["val_R@10_sum_memory"] > fitted.scores["val_R@10_sum_heads"]
        assert len(fitted.heads.arrays[memory.IMAGES]) == 60
    else:
        assert fitted.heads is heads and fitted.text_memory == Readout()


def test_a_config_that_reads_a_missing_memory_is_refused(trained, tmp_path):
    folder, _ = trained
    config = json.loads((folder / "towers_config.json").read_text())
    config["image_memory"] = {"k": 10, "temperature": 0.05, "weight": 0.6}
    (tmp_path / "towers_config.json").write_text(json.dumps(config))
    with np.load(folder / HEADS_FILE) as z:
        np.savez(tmp_path / HEADS_FILE, **{k: z[k] for k in z.files if not k.startswith("memory")})
    with pytest.raises(
        ModelError,
        match=r"reads a memory of its training pictures, but its head weights hold none "
        r"\(memory_images, memory_titles, memory_captions, memory_caption_images, "
        r"memory_caption_counts missing\)",
    ):
        Heads.read(tmp_path / HEADS_FILE, TowersConfig.read(tmp_path))


def test_no_memory_trains_heads_alone(tmp_path):
    samples = read_captioned(SAMPLE_CORPUS / "captions.jsonl")[::3][:40]
    config = LitConfig(epochs=1, batch_size=16, views=0, dim=32, val_fraction=0.2, memory=False)
    train_towers(samples, tmp_path / "m", config)
    stored = TowersConfig.read(tmp_path / "m")
    assert not stored.image_memory.active and not stored.text_memory.active
    with np.load(tmp_path / "m" / HEADS_FILE) as z:
        assert not any(k.startswith("memory") for k in z.files)


def test_the_bundled_model_reads_its_memory():
    """lite0-muse-clipart-memory: each vector is its heads' vector pulled toward the memory."""
    encoder = TowersEncoder(resolve_model("lite0-muse-clipart-memory"))
    assert encoder.config.image_memory.active and encoder.config.text_memory.active
    features = encoder.text_features(["a dog", "犬"])
    heads = encoder.heads
    with_memory = heads.texts(features)
    heads.text_memory, kept = Readout(), heads.text_memory
    try:
        plain = heads.texts(features)
    finally:
        heads.text_memory = kept
    assert np.all((with_memory * plain).sum(axis=1) < 0.999)
    # The memory brings the two languages closer: the Japanese query reads English captions.
    assert float(with_memory[0] @ with_memory[1]) > float(plain[0] @ plain[1])
