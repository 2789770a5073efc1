"""mmsearch train / eval: contrastive training that resumes exactly, and honest retrieval scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.errors import TrainingError
from mmsearch.train.captioned import read_captioned
from mmsearch.train.evaluation import retrieval_scores
from mmsearch.train.open_clip_training import TrainConfig, train
from tests.helpers import shapes

TINY = dict(arch="mmsearch-tiny", batch_size=12, lr=2e-3, warmup_steps=2, seed=3)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    pairs = shapes.make_set(root / "images", per_kind=4, seed=7)
    lines = [json.dumps({"image": f"images/{p.name}", "caption": c}) for p, c in pairs]
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _weights(folder):
    return torch.load(folder / "open_clip_pytorch_model.bin", weights_only=True)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_continues_exactly(small_set, tmp_path, precision):
    samples = read_captioned(small_set / "captions.jsonl")
    config = TrainConfig(epochs=3, precision=precision, **TINY)
    train(samples, tmp_path / "straight", config)
    with pytest.raises(KeyboardInterrupt):
        train(samples, tmp_path / "resumed", config, stop_after_epoch=1)
    assert not (tmp_path / "resumed" / "open_clip_pytorch_model.bin").exists()
    result = train(samples, tmp_path / "resumed", config)
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_other_settings_is_refused(small_set, tmp_path):
    samples = read_captioned(small_set / "captions.jsonl")
    with pytest.raises(KeyboardInterrupt):
        train(samples, tmp_path / "m", TrainConfig(epochs=2, **TINY), stop_after_epoch=1)
    with pytest.raises(TrainingError, match="was made with other settings or data"):
        train(samples, tmp_path / "m", TrainConfig(epochs=5, **TINY))


def test_checkpoint_from_before_the_precision_option_resumes_in_fp32(small_set, tmp_path):
    samples = read_captioned(small_set / "captions.jsonl")
    config = TrainConfig(epochs=2, precision="fp32", **TINY)
    with pytest.raises(KeyboardInterrupt):
        train(samples, tmp_path / "m", config, stop_after_epoch=1)
    checkpoint = tmp_path / "m" / "checkpoint.pt"
    state = torch.load(checkpoint, weights_only=True)
    del state["config"]["precision"]  # as an older mmsearch wrote it
    torch.save(state, checkpoint)
    assert [h["epoch"] for h in train(samples, tmp_path / "m", config).history] == [1, 2]


def test_bad_precision_is_refused(small_set, tmp_path):
    samples = read_captioned(small_set / "captions.jsonl")
    with pytest.raises(TrainingError, match="precision 'fp8': use auto, fp32 or bf16"):
        train(samples, tmp_path / "m", TrainConfig(precision="fp8", **TINY))


def test_cli_train_then_eval_then_use(small_set, tmp_path):
    runner = CliRunner()
    out = tmp_path / "model"
    result = runner.invoke(
        app,
        [
            "train", str(small_set / "captions.jsonl"), "--output", str(out),
            "--arch", "mmsearch-tiny", "--epochs", "2", "--batch-size", "12", "--warmup", "2",
            "--val", str(small_set / "captions.jsonl"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("trained 2 epochs (6 steps) in ")
    assert '"t2i_R@10"' in result.stderr  # validation after each epoch

    scores = runner.invoke(
        app, ["eval", str(small_set / "captions.jsonl"), "--model", str(out), "--json"]
    )
    assert scores.exit_code == 0, scores.output
    data = json.loads(scores.stdout)
    assert (data["images"], data["captions"]) == (36, 9)
    assert set(data["text_to_image"]) == {"R@1", "R@5", "R@10", "median_rank"}
    table = runner.invoke(app, ["eval", str(small_set / "captions.jsonl"), "--model", str(out)])
    assert table.stdout.splitlines()[0] == "36 images, 9 distinct captions"


def test_missing_images_are_named(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"image": "nope.png", "caption": "x"}\n')
    with pytest.raises(TrainingError) as caught:
        read_captioned(tmp_path / "c.jsonl")
    assert str(caught.value) == (
        f"{tmp_path / 'c.jsonl'} names 1 image(s) that do not exist (paths are relative to "
        f"{tmp_path}): line 1: {tmp_path / 'nope.png'}; fix the paths or pass --skip-missing"
    )


def test_images_outside_the_collection_are_refused(small_set, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes((small_set / "images" / "red_circle_0.png").read_bytes())
    (small_set / "images" / "link.png").symlink_to(secret)
    path = small_set / "escape.jsonl"
    rows = [f"../{tmp_path.name}/secret.png", str(secret), "images/link.png"]
    path.write_text("".join(json.dumps({"image": r, "caption": "x"}) + "\n" for r in rows))
    with pytest.raises(TrainingError) as caught:
        read_captioned(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: 3 malformed line(s): line 1: image ../")
    assert f"is outside {small_set} (pass --images-root with a folder that holds" in message
    assert [f"line {n}: image" in message for n in (1, 2, 3)] == [True] * 3
    (small_set / "images" / "link.png").unlink()
    assert len(read_captioned(path, images_root="/", skip_missing=True)) == 1  # the absolute one


def test_image_without_caption(small_set):
    path = small_set / "bad.jsonl"
    path.write_text('{"image": "images/red_circle_0.png", "captions": []}\n')
    with pytest.raises(TrainingError) as caught:
        read_captioned(path)
    assert str(caught.value) == (
        f"{path}: 1 malformed line(s): line 1: image images/red_circle_0.png has no caption"
    )


def test_empty_collection(tmp_path):
    (tmp_path / "c.jsonl").write_text("\n")
    with pytest.raises(TrainingError, match="holds no captioned images"):
        read_captioned(tmp_path / "c.jsonl")
    with pytest.raises(TrainingError, match="the training collection is empty"):
        train([], tmp_path / "m", TrainConfig(**TINY))


def test_cli_training_error_contract(tmp_path):
    (tmp_path / "c.jsonl").write_text('{"image": "nope.png", "caption": "x"}\n')
    result = CliRunner().invoke(
        app, ["train", str(tmp_path / "c.jsonl"), "--output", str(tmp_path / "m")]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {tmp_path / 'c.jsonl'} names 1 image(s)")


def test_checkpoint_of_another_architecture(tiny_model, photos, tmp_path):
    from typer.testing import CliRunner

    weights = tiny_model / "open_clip_pytorch_model.bin"
    result = CliRunner().invoke(
        app,
        ["index", str(photos), "--library", str(tmp_path / "l"), "--model", f"ViT-B-32:{weights}"],
    )
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot load model ViT-B-32:{weights}: ")
    assert result.stderr.strip().endswith("is the checkpoint of this architecture?")


def test_recall_counts_any_item_with_the_same_caption():
    # Images 0 and 2 are both captioned "star"; image 2 looks more like "moon".
    images = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    captions = ["moon", "star"]
    caption_vectors = np.array([[0.0, 1.0], [1.0, 0.0]])
    scores = retrieval_scores(images, ["star", "moon", "star"], caption_vectors, captions)
    # "star" finds image 0 first: a hit, although image 2 (also "star") ranks last.
    assert scores.text_to_image == {"R@1": 1.0, "R@5": 1.0, "R@10": 1.0, "median_rank": 1.0}
    # Image 2 ranks its own caption second.
    assert scores.image_to_text["R@1"] == pytest.approx(2 / 3)
    assert scores.image_to_text["R@5"] == 1.0
    assert scores.image_to_text["median_rank"] == 1.0


@pytest.mark.slow
def test_out_of_memory_says_what_to_do(small_set, tmp_path):
    """A batch that does not fit: a real allocation failure under a real memory limit."""
    import subprocess
    import sys

    code = (
        "import resource, sys\n"
        "limit = int(5.5 * 2**30)\n"
        "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
        "from mmsearch.cli import main\n"
        "sys.argv = ['mmsearch'] + sys.argv[1:]\n"
        "main()\n"
    )
    args = [str(small_set / "captions.jsonl"), "--output", str(tmp_path / "m")]
    args += ["--arch", "ViT-B-32", "--batch-size", "36", "--epochs", "1"]
    done = subprocess.run(
        [sys.executable, "-c", code, "train", *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith("Error: out of memory ")


def test_fine_tune_from_a_model_folder(small_set, tmp_path):
    samples = read_captioned(small_set / "captions.jsonl")
    train(samples, tmp_path / "base", TrainConfig(epochs=1, **TINY))
    base = _weights(tmp_path / "base")
    config = TrainConfig(epochs=1, init=str(tmp_path / "base"), **{**TINY, "lr": 1e-4})
    train(samples, tmp_path / "tuned", config)
    tuned = _weights(tmp_path / "tuned")
    # Fine-tuning starts from the base weights: small steps away, not a fresh random init.
    drift = max((tuned[k].float() - base[k].float()).abs().max().item() for k in base)
    assert 0 < drift < 0.05
