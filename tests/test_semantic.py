"""Cross-modal retrieval works, not just the plumbing: real models through index → search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mmsearch.cli import app
from tests.conftest import SAMPLE_CORPUS
from tests.helpers import shapes


@pytest.mark.slow
def test_held_out_shapes_are_found_by_text_and_captioned(cli, photos, tmp_path):
    """A model trained on other drawings of the same kinds finds and describes new ones."""
    assert cli("index", str(photos)).exit_code == 0
    for colour in shapes.COLOURS:
        for shape in shapes.SHAPES:
            found = cli("search", shapes.caption(colour, shape), "-k", "3", "--paths-only")
            names = [Path(p).name for p in found.stdout.splitlines()]
            assert sum(n.startswith(f"{colour}_{shape}_") for n in names) >= 2, (colour, shape)

    captions = tmp_path / "captions.txt"
    captions.write_text(
        "\n".join(shapes.caption(c, s) for c in shapes.COLOURS for s in shapes.SHAPES) + "\n"
    )
    assert cli("add-texts", str(captions)).exit_code == 0
    correct = 0
    for image in sorted(photos.iterdir()):
        hits = json.loads(cli("captions", str(image), "-k", "1", "--json").stdout)
        colour, shape, _ = image.stem.split("_")
        correct += hits[0]["text"] == shapes.caption(colour, shape)
    assert correct >= 24  # of 27


@pytest.mark.slow
def test_pretrained_architecture_checkpoint_loads_through_model_option(tmp_path, photos):
    """The path real users take with downloaded weights: ARCH:CHECKPOINT of a real architecture."""
    import open_clip

    model = open_clip.create_model("ViT-B-32")  # random weights: the network is closed here
    checkpoint = tmp_path / "vit-b-32.pt"
    torch.save({"state_dict": model.state_dict()}, checkpoint)
    del model

    runner = CliRunner()
    library = ["--library", str(tmp_path / "lib"), "--model", f"ViT-B-32:{checkpoint}"]
    result = runner.invoke(app, ["index", str(photos), "--json", *library])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 27
    hits = json.loads(runner.invoke(app, ["search", "a red circle", "--json", *library]).stdout)
    assert len(hits) == 10
    info = json.loads(
        runner.invoke(app, ["info", "--json", "--library", str(tmp_path / "lib")]).stdout
    )
    assert info["model"]["dim"] == 512 and info["model"]["weights"].startswith("sha256:")
    # Searching without --model uses the library's own model.
    again = runner.invoke(
        app, ["search", "a red circle", "-k", "1", "--library", str(tmp_path / "lib")]
    )
    assert again.exit_code == 0, again.output


QUERIES = json.loads((SAMPLE_CORPUS / "queries.json").read_text())
# What the bundled model still misses in the top 5 (BENCHMARKS.md): strict, so that a better
# model that finds them fails here until it is taken off this list. (トランプ, playing cards,
# which the text tower reads as a name, was one until the model's dictionary glossed it.)
KNOWN_MISSES: set[str] = set()


@pytest.fixture(scope="module")
def bundled_library(tmp_path_factory):
    """sample_corpus indexed with the bundled lite0-muse-clipart-memory-jmdict, its captions
    added."""
    runner = CliRunner()
    lib = ["--library", str(tmp_path_factory.mktemp("bundled") / "lib")]
    images = str(SAMPLE_CORPUS / "images")
    result = runner.invoke(
        app, ["index", images, "--model", "lite0-muse-clipart-memory-jmdict", "--json", *lib]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 240
    captions = str(SAMPLE_CORPUS / "captions.jsonl")
    added = runner.invoke(app, ["add-texts", captions, "--text-field", "caption", *lib])
    assert added.exit_code == 0, added.output
    return runner, lib


@pytest.mark.slow
@pytest.mark.parametrize(
    "query, expect",
    [
        pytest.param(
            q[lang],
            q["expect"],
            id=f"{lang}-{q['en']}",
            marks=[pytest.mark.xfail(strict=True, reason="a known miss")]
            if q[lang] in KNOWN_MISSES
            else [],
        )
        for q in QUERIES
        for lang in ("en", "ja")
    ],
)
def test_bundled_model_finds_subjects_in_english_and_japanese(bundled_library, query, expect):
    """The quick start: each subject of sample_corpus is in the top 5 for its English query and
    for the same query in Japanese."""
    runner, lib = bundled_library
    # semantic: this measures the model; file and folder names would answer many of these
    found = runner.invoke(
        app, ["search", query, "-k", "5", "--paths-only", "--mode", "semantic", *lib]
    )
    assert found.exit_code == 0, found.output
    paths = [p.split("/images/")[1] for p in found.stdout.splitlines()]
    assert any(e in p for p in paths for e in expect), (query, paths)


@pytest.mark.slow
def test_bundled_model_captions_a_drawing(bundled_library):
    runner, lib = bundled_library
    rows = [
        json.loads(line) for line in (SAMPLE_CORPUS / "captions.jsonl").read_text().splitlines()
    ]
    star = next(r for r in rows if r["category"] == "shapes/stars")
    hits = json.loads(
        runner.invoke(
            app, ["captions", str(SAMPLE_CORPUS / star["image"]), "-k", "5", "--json", *lib]
        ).stdout
    )
    assert star["caption"] in [h["text"] for h in hits]


@pytest.mark.slow
def test_reparameterised_mobileclip_encodes(tmp_path):
    """The MobileCLIP2 preset's inference path: folded branches give the same vectors."""
    import numpy as np
    import open_clip

    from mmsearch.encoders.base import OpenClipEncoder
    from mmsearch.encoders.registry import ModelSpec

    torch.manual_seed(0)
    reference = open_clip.create_model("MobileCLIP2-S2").eval()
    checkpoint = tmp_path / "mobileclip2.pt"
    torch.save(reference.state_dict(), checkpoint)
    spec = ModelSpec(
        name="m", arch="MobileCLIP2-S2", pretrained=str(checkpoint), reparameterize=True
    )
    encoder = OpenClipEncoder(spec, device="cpu")
    pictures = np.random.default_rng(0).integers(0, 255, (2, 256, 256, 3), dtype=np.uint8)
    folded = encoder.encode_images(pictures)
    from mmsearch.imaging.preprocess import to_model_tensor

    with torch.inference_mode():
        unfolded = reference.encode_image(to_model_tensor(pictures, encoder.preprocess), True)
    assert (folded * unfolded.numpy()).sum(axis=1).min() > 0.999
