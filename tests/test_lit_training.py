"""Training a towers model: cached features, a validation slice, exact resume, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mmsearch.encoders.registry import resolve_model
from mmsearch.encoders.towers_encoder import HEADS_FILE, Heads, TowersConfig, TowersEncoder
from mmsearch.errors import ModelError, TrainingError
from mmsearch.train.captioned import read_captioned
from mmsearch.train.lit_training import LitConfig, split_validation, train_towers
from tests.conftest import SAMPLE_CORPUS

SMALL = LitConfig(epochs=3, batch_size=32, views=1, dim=64, val_fraction=0.2, seed=3)


@pytest.fixture(scope="module")
def samples():
    """80 captioned drawings of sample_corpus, every fourth one."""
    return read_captioned(SAMPLE_CORPUS / "captions.jsonl")[::3][:80]


def _heads(folder):
    with np.load(folder / HEADS_FILE) as z:
        return {k: z[k] for k in z.files}


def test_trains_a_model_folder_that_encodes(tmp_path, samples):
    result = train_towers(samples, tmp_path / "m", SMALL)
    assert result.epochs == 3 and "best_epoch" in result.history[-1]
    assert all("val_t2i_R@10" in h for h in result.history[:-1])
    encoder = TowersEncoder(resolve_model(str(tmp_path / "m")))
    vectors = encoder.encode_texts(["a flag", "旗"])
    assert vectors.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-5)
    # The cache holds the tower features: a second experiment computes none.
    assert len(list((tmp_path / "m" / "cache").glob("image-features-*.npz"))) == 1


def test_resume_ends_where_an_uninterrupted_run_ends(tmp_path, samples):
    train_towers(samples, tmp_path / "whole", SMALL)
    train_towers(samples, tmp_path / "split", SMALL, stop_after_epoch=1)
    train_towers(samples, tmp_path / "split", SMALL)
    whole, split = _heads(tmp_path / "whole"), _heads(tmp_path / "split")
    assert whole.keys() == split.keys()
    for key in whole:
        np.testing.assert_array_equal(whole[key], split[key], err_msg=key)


def test_resume_with_other_settings_is_refused(tmp_path, samples):
    train_towers(samples, tmp_path / "m", SMALL, stop_after_epoch=1)
    other = LitConfig(**{**SMALL.__dict__, "dim": 32})
    with pytest.raises(TrainingError, match="made with other settings or data"):
        train_towers(samples, tmp_path / "m", other)


def test_validation_slice_is_fixed_by_path_and_never_empty(samples):
    train, val = split_validation(samples, 0.2)
    again_train, again_val = split_validation(list(reversed(samples)), 0.2)
    assert {s.image for s in val} == {s.image for s in again_val} and len(val) >= 2
    assert not {s.image for s in train} & {s.image for s in val}
    with pytest.raises(TrainingError, match="larger --val-fraction"):
        split_validation(samples[:3], 0.05)


def test_undecodable_picture_is_skipped_and_reported(tmp_path, samples):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    rows = [*samples, type(samples[0])(str(broken), ["broken"])]
    skipped = []
    train_towers(rows, tmp_path / "m", SMALL, on_skip=lambda path, why: skipped.append(path))
    assert skipped == [str(broken)]


def test_numpy_heads_compute_what_the_torch_heads_computed(tmp_path, samples):
    """The MLP head's GELU and the standardisation, as numpy applies them at query time."""
    from mmsearch.train.lit_training import _HeadsModule

    config = LitConfig(**{**SMALL.__dict__, "image_hidden": 48})
    module = _HeadsModule(20, 12, config).eval()
    mean, std = np.random.default_rng(0).normal(size=(2, 20)).astype(np.float32)
    std = np.abs(std) + 0.5
    x = np.random.default_rng(1).normal(size=(5, 20)).astype(np.float32)
    t = np.random.default_rng(2).normal(size=(5, 12)).astype(np.float32)
    heads = module.heads(mean, std)
    with torch.no_grad():
        want_image = module.image(torch.from_numpy((x - mean) / std)).numpy()
        want_text = module.text(torch.from_numpy(t)).numpy()
    np.testing.assert_allclose(heads.images(x), want_image, atol=1e-5)
    np.testing.assert_allclose(heads.texts(t), want_text, atol=1e-5)


def test_heads_of_another_dimension_are_refused(tmp_path, samples):
    train_towers(samples, tmp_path / "m", SMALL)
    config_file = tmp_path / "m" / "towers_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "dim": 128}))
    message = r"image_w1 is \(2768, 64\), expected \(2768, 128\).*trained for other towers"
    with pytest.raises(ModelError, match=message):
        Heads.read(tmp_path / "m" / HEADS_FILE, TowersConfig.read(tmp_path / "m"))


def test_cli_trains_a_towers_model_with_decoder_workers(tmp_path):
    """`mmsearch train --kind towers`, as a user runs it: decoder processes, --val scored at the
    end, and the folder works as --model."""
    from typer.testing import CliRunner

    from mmsearch.cli import app

    lines = (SAMPLE_CORPUS / "captions.jsonl").read_text().splitlines()[::6]
    captions = tmp_path / "captions.jsonl"
    rows = [json.loads(line) for line in lines]
    for row in rows:
        row["image"] = str(SAMPLE_CORPUS / row["image"])
    captions.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    runner = CliRunner()
    args = ["train", str(captions), "-o", str(tmp_path / "m"), "--kind", "towers",
            "--images-root", str(SAMPLE_CORPUS), "--epochs", "2", "--batch-size", "16",
            "--dim", "32", "--views", "1", "--val-fraction", "0.2",
            "--val", str(captions), "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    trained = json.loads(result.stdout)
    assert trained["epochs"] == 2 and "val_file" in trained["history"][-1]
    assert (tmp_path / "m" / "heads.npz").is_file()

    bad = runner.invoke(app, [*args[:5], "nope", *args[6:]])
    assert bad.exit_code == 1
    assert bad.stderr.strip() == "Error: --kind 'nope': use open_clip or towers"
