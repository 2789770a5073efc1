"""Cross-modal retrieval works, not just the plumbing: real models through index → search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from mmsearch.cli import app
from tests import shapes
from tests.conftest import SAMPLE_CORPUS


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


@pytest.mark.slow
@pytest.mark.skipif(
    not (
        Path(__file__).parent.parent / "mmsearch/models/clipart-mini/open_clip_config.json"
    ).exists(),
    reason="the bundled clipart-mini weights are not built",
)
def test_bundled_model_on_sample_corpus(tmp_path):
    """The quick start: clipart-mini finds subjects of the held-out sample corpus."""
    runner = CliRunner()
    lib = ["--library", str(tmp_path / "lib")]
    result = runner.invoke(
        app, ["index", str(SAMPLE_CORPUS / "images"), "--model", "clipart-mini", "--json", *lib]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 234
    subjects = [
        ("flag", "signs_and_symbols/flags"),
        ("stars", "shapes/stars"),
        ("road sign", "transportation/roadsigns"),
        ("fruit", "food/fruit"),
    ]
    for query, folder in subjects:
        paths = runner.invoke(app, ["search", query, "-k", "5", "--paths-only", *lib]).stdout
        assert any(f"/images/{folder}/" in p for p in paths.splitlines()), (query, paths)

    added = runner.invoke(
        app, ["add-texts", str(SAMPLE_CORPUS / "captions.jsonl"), "--text-field", "caption", *lib]
    )
    assert added.exit_code == 0, added.output
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

    from mmsearch.encoder import OpenClipEncoder
    from mmsearch.models import ModelSpec

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
    from mmsearch.preprocess import to_model_tensor

    with torch.inference_mode():
        unfolded = reference.encode_image(to_model_tensor(pictures, encoder.preprocess), True)
    assert (folded * unfolded.numpy()).sum(axis=1).min() > 0.999
