"""A towers model's arrays are read when first used: a text query reads the text side only."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from mmsearch.encoders import memory
from mmsearch.encoders.registry import resolve_model
from mmsearch.encoders.towers_encoder import Heads, TowersConfig, TowersEncoder
from mmsearch.errors import ModelError
from mmsearch.imaging.pictures import open_picture
from mmsearch.imaging.preprocess import fit_to_model
from tests.conftest import SAMPLE_CORPUS

BUNDLED = resolve_model("lite0-muse-clipart-memory-jmdict")
TEXT_SIDE = {"text_w1", "text_b1", memory.CAPTIONS, memory.CAPTION_IMAGES, memory.CAPTION_COUNTS}
DOG = SAMPLE_CORPUS / "images/animals/mammals/dogs/dog_head_nicu_buculei_02.png"


def test_a_text_reads_the_text_side_and_both_sides_encode_as_if_read_whole():
    encoder = TowersEncoder(BUNDLED, image_precision="fp32")
    texts = encoder.encode_texts(["a dog", "犬"])
    assert encoder.heads.arrays.loaded == TEXT_SIDE
    picture = fit_to_model(open_picture(str(DOG)).image, encoder.preprocess)[None]
    pictures = encoder.encode_images(picture)
    # The same files read whole, as every array was before.
    whole = {}
    for file in (BUNDLED.folder / encoder.config.heads, BUNDLED.folder / encoder.config.classes):
        with np.load(file) as z:
            whole |= {k: z[k] for k in z.files}
    eager = Heads(whole, encoder.config)
    np.testing.assert_array_equal(pictures, eager.images(encoder.tower_features(picture)))
    features = encoder.text_features(["a dog", "犬"])
    np.testing.assert_array_equal(texts, eager.texts(features))


def _copy_of_bundled(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(BUNDLED.folder, folder)
    config = TowersConfig.read(folder)
    heads = folder / "heads.npz"
    shutil.copy(BUNDLED.folder / config.heads, heads)
    return folder, config, heads


def test_damaged_head_weights_are_refused_when_the_model_opens(tmp_path):
    folder, config, heads = _copy_of_bundled(tmp_path)
    heads.write_bytes(heads.read_bytes()[:100_000])
    with pytest.raises(ModelError, match="cannot read head weights .*heads.npz"):
        Heads.read(heads, config, folder / config.classes)


def test_head_weights_gone_after_opening_are_a_clear_error(tmp_path):
    folder, config, heads = _copy_of_bundled(tmp_path)
    opened = Heads.read(heads, config, folder / config.classes)
    heads.unlink()
    with pytest.raises(ModelError, match="cannot read head weights .*heads.npz"):
        opened.texts(np.zeros((1, 512), np.float32))
