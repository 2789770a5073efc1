"""Image vectors that read the names of the classes their image tower's classifier sees."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from mmsearch.encoders import memory
from mmsearch.encoders.registry import resolve_model
from mmsearch.encoders.towers import _pretrained, image_tower_spec
from mmsearch.encoders.towers_encoder import Heads, TowersConfig, TowersEncoder
from mmsearch.errors import ModelError
from mmsearch.imaging.pictures import open_picture
from mmsearch.imaging.preprocess import fit_to_model
from mmsearch.train.class_names import imagenet_class_names
from tests.conftest import SAMPLE_CORPUS

BUNDLED = resolve_model("lite0-muse-clipart-memory-jmdict")
HARP = SAMPLE_CORPUS / "images/recreation/music/harp1_ganson.png"


@pytest.fixture(scope="module")
def encoder():
    return TowersEncoder(BUNDLED, image_precision="fp32")


@pytest.fixture(scope="module")
def harp(encoder):
    return fit_to_model(open_picture(str(HARP)).image, encoder.preprocess)[None]


def test_the_stored_classifier_is_the_towers_own(encoder, harp):
    """The keys, stored in half precision and read with the pooled features that end the
    tower's features, give the logits of timm's network with its classifier kept."""
    import torch

    from mmsearch.imaging.preprocess import to_model_tensor

    network = _pretrained(image_tower_spec(encoder.config.image_tower)).eval()
    with torch.inference_mode():
        expected = network(to_model_tensor(harp, encoder.preprocess)).numpy()
    keys = encoder.heads.arrays[memory.CLASS_KEYS]
    logits = memory.classifier_queries(encoder.tower_features(harp), keys) @ keys.T
    np.testing.assert_allclose(logits, expected, atol=0.05)
    top = np.argsort(-expected[0])[:5]
    assert list(np.argsort(-logits[0])[:5]) == list(top)
    assert "harp" in [imagenet_class_names()[i] for i in top]


def test_a_picture_moves_toward_the_name_of_what_it_shows(encoder, harp):
    """The harp drawing, with and without the class names read (all else equal)."""
    with_names = encoder.encode_images(harp)
    heads = encoder.heads
    without = Heads(
        heads.arrays, dataclasses.replace(encoder.config, class_memory=memory.Readout())
    )
    plain = without.images(encoder.tower_features(harp))
    name = encoder.encode_texts(["harp"])
    assert (with_names @ name.T).item() > (plain @ name.T).item() + 0.05
    assert np.linalg.norm(with_names) == pytest.approx(1, abs=1e-5)


def test_text_vectors_do_not_read_class_names(encoder):
    plain = TowersEncoder(resolve_model("lite0-muse-clipart-memory"))
    np.testing.assert_array_equal(
        encoder.encode_texts(["a paint brush"]), plain.encode_texts(["a paint brush"])
    )


def test_a_config_that_reads_class_names_it_lacks_is_refused(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    config = json.loads((BUNDLED.folder / "towers_config.json").read_text())
    config |= {"heads": str(BUNDLED.weights_path.resolve()), "classes": "", "lexicon": ""}
    (folder / "towers_config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="reads class names, but they are missing"):
        TowersEncoder(resolve_model(str(folder)))
    # The classes file named but gone: the library's identity check says which file.
    config["classes"] = "classes.npz"
    (folder / "towers_config.json").write_text(json.dumps(config))
    from mmsearch.encoders.registry import weights_id

    with pytest.raises(ModelError, match=r"file .*classes.npz is missing; reinstall"):
        weights_id(resolve_model(str(folder)))
    shutil.copy(BUNDLED.folder / "classes.npz", folder)
    assert TowersConfig.read(folder).class_memory.active
    assert TowersEncoder(resolve_model(str(folder))).encode_texts(["a dog"]).shape == (1, 512)
