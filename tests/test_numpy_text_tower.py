"""Torch-free text queries: the exported text tower reproduces open_clip, tokens and vectors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmsearch.encoders.numpy_text_tower import PROBE_TEXTS, BpeTokenizer, NumpyTextTower, export
from mmsearch.encoders.registry import register_open_clip_configs, resolve_model
from mmsearch.encoders.text_tower import encode_text_truncated, load_text_tower
from tests.conftest import SAMPLE_CORPUS

TEXTS = [
    "a red bicycle",
    "  Several   SPACES\tand\nnewlines  ",
    "l'été dernier, we'd've gone — didn't we?",
    "&lt;b&gt;html&lt;/b&gt; &amp;amp; entities",
    "ünïcödé ＦＵＬＬＷＩＤＴＨ 北京 🚲🐕 emoji",
    "mojibake: Ã©tÃ©",
    "12345 3.14 1,000,000",
    "<start_of_text> <end_of_text> literal specials",
    "",
    "word " * 200,
]


def _captions() -> list[str]:
    lines = (SAMPLE_CORPUS / "captions.jsonl").read_text().splitlines()
    return [json.loads(line)["caption"] for line in lines]


@pytest.mark.parametrize("context_length", [77, 24])
def test_tokenizer_matches_open_clip(context_length):
    from open_clip.tokenizer import SimpleTokenizer, default_bpe

    texts = TEXTS + PROBE_TEXTS + _captions()
    theirs = SimpleTokenizer(context_length=context_length)(texts).numpy()
    ours = BpeTokenizer(default_bpe(), context_length)(texts)
    np.testing.assert_array_equal(ours, theirs)


def _model(name: str, tiny_model):
    import open_clip

    register_open_clip_configs()
    spec = resolve_model(str(tiny_model) if name == "tiny" else name)
    model = load_text_tower(spec.arch, spec.pretrained, spec.weights_path)
    return model, open_clip.get_tokenizer(spec.arch)


@pytest.mark.parametrize("name", ["clipart-mini", "tiny"])
def test_exported_tower_encodes_as_open_clip(name, tiny_model, tmp_path):
    model, tokenizer = _model(name, tiny_model)
    assert export(model, tokenizer, tmp_path / "tower", "sha256:abc")
    tower = NumpyTextTower.open(tmp_path / "tower", "sha256:abc")
    texts = TEXTS + _captions()[:40]
    with torch.inference_mode():
        expected = encode_text_truncated(model, tokenizer(texts)).numpy()
    vectors = tower.encode(texts)
    assert vectors.dtype == np.float32 and vectors.shape == expected.shape
    assert (vectors * expected).sum(axis=1).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    # Written for one set of weights: any other finds nothing to use.
    assert NumpyTextTower.open(tmp_path / "tower", "sha256:other") is None
    assert NumpyTextTower.open(tmp_path / "missing", "sha256:abc") is None


@pytest.mark.slow
def test_exported_tower_encodes_as_open_clip_at_full_size(tmp_path):
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32-256").eval()  # the default architecture
    tokenizer = open_clip.get_tokenizer("ViT-B-32-256")
    assert export(model, tokenizer, tmp_path / "tower", "w")
    with torch.inference_mode():
        expected = encode_text_truncated(model, tokenizer(TEXTS)).numpy()
    vectors = NumpyTextTower.open(tmp_path / "tower", "w").encode(TEXTS)
    assert (vectors * expected).sum(axis=1).min() >= 0.9999


def test_a_tower_numpy_does_not_reproduce_is_not_exported(tiny_model, tmp_path):
    from open_clip.transformer import LayerScale

    model, tokenizer = _model("tiny", tiny_model)
    width = model.transformer.width
    model.transformer.resblocks[0].ls_1 = LayerScale(width, 0.5)  # a real variant: layer scale
    assert not export(model, tokenizer, tmp_path / "tower", "w")
    assert not (tmp_path / "tower").exists() and list(tmp_path.iterdir()) == []


def test_cold_text_query_runs_without_torch(cli, photos):
    """After `index`, a new text query from a fresh process imports no torch and returns what the
    torch encoder returns in fp32."""
    from mmsearch import open_library
    from mmsearch.encoders.base import OpenClipEncoder

    assert cli("index", str(photos)).exit_code == 0
    assert (cli.library / "text_tower" / "meta.json").is_file()
    code = (
        "import sys, json; from typer.testing import CliRunner; from mmsearch.cli import app; "
        f"r = CliRunner().invoke(app, ['search', 'a green triangle', '-k', '5', '--json', "
        "'--mode', 'semantic', "
        f"'--library', {str(cli.library)!r}]); "
        "print(json.dumps([r.exit_code, 'torch' in sys.modules, json.loads(r.stdout)]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    exit_code, torch_loaded, hits = json.loads(out.stdout)
    assert (exit_code, torch_loaded) == (0, False), out.stderr
    with open_library(cli.library, create=False) as lib:
        fp32 = OpenClipEncoder(lib.model, device="cpu", text_precision="fp32")
        vector = fp32.encode_texts(["a green triangle"])[0]
        expected = lib.searcher.image_hits(vector, 5)
    assert [h["path"] for h in hits] == [h.path for h in expected]
    np.testing.assert_allclose([h["score"] for h in hits], [h.score for h in expected], atol=1e-5)
