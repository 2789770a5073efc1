"""The CLI end to end on a real library, a real FAISS index and a real (tiny, trained) model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import BOTH_BACKENDS
from tests.helpers import shapes


@BOTH_BACKENDS
def test_index_then_search_json(cli, photos):
    result = cli("index", str(photos), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["added"] == 27 and summary["skipped_total"] == 0

    result = cli("search", "a red circle", "-k", "3", "--json")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert all(Path(h["path"]).name.startswith("red_circle") for h in hits)
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]


def test_search_table_and_paths_only(cli, photos):
    cli("index", str(photos))
    table = cli("search", "a blue square", "-k", "2")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert len(lines) == 2 and lines[0].split()[0] == "1" and "blue_square" in lines[0]
    paths = cli("search", "a blue square", "-k", "2", "--paths-only").stdout.splitlines()
    assert len(paths) == 2 and all(Path(p).is_file() for p in paths)


def test_json_and_paths_only_together_is_an_error(cli, photos):
    cli("index", str(photos))
    result = cli("search", "a red circle", "--json", "--paths-only")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: --json and --paths-only cannot be used together; choose one"
    )


@BOTH_BACKENDS
def test_reindex_is_incremental(cli, photos):
    assert cli("index", str(photos)).exit_code == 0
    (photos / "red_circle_0.png").unlink()  # deleted
    shapes.draw("green", "square", __import__("random").Random(9)).save(
        photos / "blue_circle_1.png"
    )  # modified in place: now a green square
    os.utime(photos / "blue_circle_1.png", ns=(1, 1))
    shapes.draw("blue", "triangle", __import__("random").Random(5)).save(photos / "new.png")

    result = cli("index", str(photos), "--json")
    summary = json.loads(result.stdout)
    assert (summary["added"], summary["updated"], summary["removed"], summary["unchanged"]) == (
        1,
        1,
        1,
        25,
    )
    paths = cli("search", "a green square", "-k", "4", "--paths-only").stdout.splitlines()
    assert str(photos / "blue_circle_1.png") in paths
    all_paths = cli("search", "a red circle", "-k", "50", "--paths-only").stdout.splitlines()
    assert str(photos / "red_circle_0.png") not in all_paths and len(all_paths) == 27

    again = json.loads(cli("index", str(photos), "--json").stdout)
    assert again["unchanged"] == 27 and again["added"] == again["updated"] == 0


def test_summary_line_and_verbose_skips(cli, photos):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (photos / "empty.png").write_bytes(b"")
    result = cli("index", str(photos))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == (
        "added 27, updated 0, removed 0, unchanged 0, skipped 2 (1 corrupt, 1 empty)"
    )
    verbose = cli("index", str(photos), "--verbose")
    assert (
        f"skipped [corrupt] {photos / 'broken.jpg'}: corrupt or truncated image header "
        "(Truncated File Read) (not retried until it changes)"
    ) in verbose.stdout.splitlines()


def test_hidden_and_exclude(cli, photos):
    hidden = photos / ".thumbnails"
    hidden.mkdir()
    Image.new("RGB", (8, 8)).save(hidden / "t.png")
    Image.new("RGB", (8, 8)).save(photos / ".dot.png")
    (photos / "raw").mkdir()
    Image.new("RGB", (8, 8)).save(photos / "raw" / "x.png")
    summary = json.loads(cli("index", str(photos), "--exclude", "raw", "--json").stdout)
    assert summary["added"] == 27
    summary = json.loads(
        cli("index", str(photos), "--include-hidden", "--exclude", "raw", "--json").stdout
    )
    assert summary["added"] == 2


@BOTH_BACKENDS
def test_add_texts_collections_and_captions(cli, photos, tmp_path):
    cli("index", str(photos))
    captions = tmp_path / "shapes.txt"
    captions.write_text(
        "\n".join(shapes.caption(c, s) for c in shapes.COLOURS for s in shapes.SHAPES) + "\n"
    )
    result = cli("add-texts", str(captions))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "added 9 texts to collection 'shapes', skipped 0"

    hits = json.loads(cli("captions", str(photos / "green_triangle_2.png"), "--json").stdout)
    assert hits[0]["text"] == "a green triangle" and hits[0]["collection"] == "shapes"

    again = cli("add-texts", str(captions))
    assert again.exit_code == 1
    assert again.stderr.strip() == (
        "Error: collection 'shapes' already exists; pass --replace to replace it or "
        "--collection NAME to add another"
    )
    assert cli("add-texts", str(captions), "--replace").exit_code == 0
    other = tmp_path / "other.jsonl"
    other.write_text('{"text": "a purple elephant", "id": "e1"}\n{"txt": 1}\n')
    result = cli("add-texts", str(other), "--collection", "zoo")
    assert result.exit_code == 0
    assert "skipped line 2: no 'text' field" in result.stderr

    listed = json.loads(cli("collections", "--json").stdout)
    assert [(c["name"], c["texts"]) for c in listed] == [("shapes", 9), ("zoo", 1)]
    only_zoo = json.loads(
        cli("captions", str(photos / "red_circle_0.png"), "--collection", "zoo", "--json").stdout
    )
    assert [h["text"] for h in only_zoo] == ["a purple elephant"]

    assert cli("remove-collection", "zoo").stdout.strip() == "removed collection 'zoo' (1 texts)"
    missing = cli("captions", str(photos / "red_circle_0.png"), "--collection", "zoo")
    assert missing.stderr.strip() == ("Error: no text collection named 'zoo' (collections: shapes)")


@BOTH_BACKENDS
def test_captions_for_an_image_outside_the_library(cli, photos, tmp_path):
    cli("index", str(photos))
    captions = tmp_path / "c.txt"
    captions.write_text("a red circle\na blue square\n")
    cli("add-texts", str(captions))
    outside = tmp_path / "query.png"
    shapes.draw("blue", "square", __import__("random").Random(3)).save(outside)
    hits = json.loads(cli("captions", str(outside), "-k", "1", "--json").stdout)
    assert hits[0]["text"] == "a blue square"


@BOTH_BACKENDS
def test_similar_leaves_out_the_query_image(cli, photos):
    cli("index", str(photos))
    query = photos / "green_circle_0.png"
    paths = cli("similar", str(query), "-k", "2", "--paths-only").stdout.splitlines()
    assert str(query) not in paths
    assert all(Path(p).name.startswith("green_circle") for p in paths)


def test_info(cli, photos, tmp_path):
    cli("index", str(photos))
    data = json.loads(cli("info", "--json").stdout)
    assert data["images"] == 27 and data["texts"] == 0
    assert data["model"]["dim"] == 64
    assert data["library_dir"] == str(cli.library)
    assert [f["modality"] for f in data["index_files"]] == ["images"]
    assert data["index_files"][0]["current"] is True
    text = cli("info").stdout
    assert f"library:     {cli.library}" in text and "images:      27" in text


def test_models_lists_presets(cli):
    result = cli("models", "--json", model=False)
    kinds = {m["name"]: m["kind"] for m in json.loads(result.stdout)}
    assert {"clipart-mini", "lite0-muse-clipart", "vit-b-32-256", "xlm-roberta-b-32"} <= set(kinds)
    assert kinds["lite0-muse-clipart-memory-jmdict"] == "towers"
    assert kinds["vit-b-32-256"] == "open_clip"


def test_library_from_environment(cli, photos, tmp_path, monkeypatch, tiny_model):
    from typer.testing import CliRunner

    from mmsearch.cli import app

    monkeypatch.setenv("MMSEARCH_LIBRARY", str(tmp_path / "envlib"))
    result = CliRunner().invoke(app, ["index", str(photos), "--model", str(tiny_model)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "envlib" / "library.db").is_file()
    assert not any(p.suffix in {".db", ".faiss"} for p in photos.iterdir())


def test_db_url_is_remembered(cli, photos, tmp_path):
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert cli("index", str(photos), "--db-url", url).exit_code == 0
    assert (tmp_path / "elsewhere.db").is_file()
    assert json.loads(cli("info", "--json").stdout)["images"] == 27


# -- errors: each says what went wrong and what to do -------------------------------------------


def test_nonexistent_path(cli, tmp_path):
    result = cli("index", str(tmp_path / "nope"))
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: path not found: {tmp_path / 'nope'}"


def test_empty_folder(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("index", str(empty))
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: no image or video files found in {empty} (looked for .avif, .bmp,"
    )
    assert "hidden files skipped, see --include-hidden" in result.stderr


def test_query_against_a_missing_library(cli, tmp_path):
    result = cli("search", "anything", library_dir=tmp_path / "none")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: no library at {tmp_path / 'none'}; create one with `mmsearch index PATH` "
        "(or pick another with --library / MMSEARCH_LIBRARY)"
    )


def test_query_against_an_empty_library(cli, tmp_path):
    texts = tmp_path / "t.txt"
    texts.write_text("a red circle\n")
    assert cli("add-texts", str(texts)).exit_code == 0
    result = cli("search", "a red circle")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: library {cli.library} has no images; index some images first: mmsearch index PATH"
    )


def test_captions_without_texts(cli, photos):
    cli("index", str(photos))
    result = cli("captions", str(photos / "red_circle_0.png"))
    assert result.stderr.strip() == (
        f"Error: library {cli.library} has no texts; add a text collection first: "
        "mmsearch add-texts FILE"
    )


def test_image_query_that_is_not_an_image(cli, photos, tmp_path):
    cli("index", str(photos))
    fake = tmp_path / "notes.png"
    fake.write_text("hello")
    result = cli("similar", str(fake))
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: cannot use {fake} as a query image: {fake}: not a recognised image file "
        "(supported: JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF, AVIF, camera RAW)"
    )


def test_missing_query_image(cli, photos, tmp_path):
    cli("index", str(photos))
    result = cli("similar", str(tmp_path / "gone.jpg"))
    assert result.stderr.strip() == (
        f"Error: cannot use {tmp_path / 'gone.jpg'} as a query image: "
        f"{tmp_path / 'gone.jpg'}: file not found (moved or deleted?)"
    )


def test_engine_options_are_checked_before_anything_is_written(cli, photos):
    unknown = cli("index", str(photos), "--engine", "spark")
    assert unknown.exit_code == 1
    assert "--engine 'spark': use local or ray" in unknown.stderr
    stray = cli("index", str(photos), "--encoders", "4")
    assert stray.exit_code == 1
    assert "go with --engine ray" in stray.stderr
    assert not cli.library.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_skipped_with_reason(cli, photos):
    (photos / "red_circle_0.png").chmod(0)
    summary = json.loads(cli("index", str(photos), "--json").stdout)
    assert summary["skipped"] == {"unreadable": 1}


def test_dangling_link_is_skipped_with_reason(cli, photos, tmp_path):
    # Root reads any file whatever its mode; a link to nothing is unreadable for everyone.
    (photos / "gone.png").symlink_to(tmp_path / "nowhere.png")
    summary = json.loads(cli("index", str(photos), "--json").stdout)
    assert summary["added"] == 27
    assert summary["skipped"] == {"unreadable": 1}
    assert (
        summary["skipped_files"][0]["message"] == f"{photos / 'gone.png'}: dangling symbolic link"
    )


def test_library_built_with_another_model(cli, photos, tiny_model):
    cli("index", str(photos))
    result = cli("search", "a red circle", "--model", "vit-b-32", model=False)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"Error: library {cli.library} was built with model {tiny_model}; vit-b-32 is a "
        "different model and its vectors would not be comparable. Omit --model (or pass "
        f"--model {tiny_model}), or use another --library for the new model"
    )


def test_unknown_model(cli, photos):
    result = cli("index", str(photos), "--model", "no-such-model", model=False)
    assert result.exit_code == 1
    assert result.stderr.strip().startswith(
        "Error: unknown model 'no-such-model': not a preset (vit-b-32-256, mobileclip2-s2,"
    )


def test_pretrained_weights_unavailable_offline(cli, photos):
    result = cli("index", str(photos), "--model", "vit-b-32", model=False)
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: could not get the weights of vit-b-32 (ViT-B-32:laion2b_s34b_b79k); "
        "downloading needs network access to the Hugging Face Hub"
    )
    assert (
        "Models that work offline: lite0-muse-clipart-memory-jmdict, lite0-muse-clipart-memory, "
        "lite0-muse-clipart, clipart-mini (bundled with mmsearch; --model "
        "lite0-muse-clipart-memory-jmdict)"
    ) in result.stderr
    assert not cli.library.exists()  # a failed first run leaves no library that looks created


def test_failed_run_keeps_an_existing_library(cli, photos):
    assert cli("index", str(photos)).exit_code == 0
    result = cli("index", str(photos / "no-such-folder"))
    assert result.exit_code == 1
    assert (cli.library / "library.db").is_file()
    assert cli("info").exit_code == 0


def test_unreachable_hub_goes_offline_instead_of_retrying(cli, photos, monkeypatch, tmp_path):
    """No network and nothing cached: the Hub is probed once (a refused connection here) and the
    process goes offline, so the download fails at once instead of after minutes of retries."""
    from huggingface_hub import constants

    from mmsearch.encoders import hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    hub.hub_reachable.cache_clear()
    try:
        result = cli("index", str(photos), "--model", "vit-b-32", model=False)
    finally:
        hub.hub_reachable.cache_clear()
    assert result.exit_code == 1
    assert "Models that work offline: lite0-muse-clipart-memory-jmdict" in result.stderr
    assert os.environ["HF_HUB_OFFLINE"] == "1" and constants.HF_HUB_OFFLINE is True
    assert "An error happened while t)" not in result.stderr  # reasons end on a whole word


@BOTH_BACKENDS
def test_single_files_can_be_indexed_and_reindexed(cli, photos):
    one = photos / "red_square_1.png"
    first = json.loads(cli("index", str(one), "--json").stdout)
    assert (first["added"], first["unchanged"]) == (1, 0)
    again = json.loads(cli("index", str(one), "--json").stdout)
    assert (again["added"], again["unchanged"]) == (0, 1)
    folder = json.loads(cli("index", str(photos), "--json").stdout)
    assert (folder["added"], folder["unchanged"]) == (26, 1)


@pytest.mark.parametrize(
    "device, message",
    [
        pytest.param("gpu", "Error: unknown device 'gpu'; use cpu, cuda or cuda:N", id="unknown"),
        pytest.param(
            "cuda",
            "Error: --device cuda: no CUDA device is available here; use --device cpu "
            "(or leave --device out to pick automatically)",
            id="cuda-absent",
            marks=pytest.mark.skipif(
                __import__("torch").cuda.is_available(), reason="this machine has CUDA"
            ),
        ),
    ],
)
def test_device_errors(cli, photos, device, message):
    result = cli("index", str(photos), "--device", device)
    assert result.exit_code == 1
    assert result.stderr.strip() == message


def test_captions_list_each_text_once_unless_asked(cli, photos, tmp_path):
    cli("index", str(photos))
    captions = tmp_path / "repeated.txt"
    captions.write_text("a red circle\n" * 4 + "a blue square\na green triangle\n")
    cli("add-texts", str(captions))
    image = str(photos / "red_circle_1.png")
    distinct = json.loads(cli("captions", image, "-k", "3", "--json").stdout)
    assert [h["text"] for h in distinct][0] == "a red circle"
    assert sorted(h["text"] for h in distinct) == [
        "a blue square",
        "a green triangle",
        "a red circle",
    ]
    every = json.loads(cli("captions", image, "-k", "4", "--keep-duplicates", "--json").stdout)
    assert [h["text"] for h in every] == ["a red circle"] * 4


@pytest.mark.parametrize("own, seen", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_mmsearch_lets_idle_openmp_threads_sleep(own, seen):
    """Spinning OpenMP threads would take the cores that the decoder workers, or a query's next
    step, need (BENCHMARKS.md): importing mmsearch, before torch or FAISS, sets the policy that
    OpenMP reads when it loads; a user's own setting wins."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if own:
        env["OMP_WAIT_POLICY"] = own
    code = "import os, mmsearch; print(os.environ['OMP_WAIT_POLICY'])"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.stdout.strip() == seen
