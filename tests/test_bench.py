"""Smoke runs of the benchmark scripts: they work and print what BENCHMARKS.md and RELIABILITY.md
quote (the full runs are on demand: make bench)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mmsearch.encoders.registry import OFFLINE_MODEL
from tests.conftest import REPO
from tests.helpers.raw_photos import drawing, save_camera_raw


def test_index_run_reports_outcome_time_and_memory(photos, tiny_model, tmp_path):
    (photos / "broken.png").write_bytes(b"not a png")
    out = subprocess.run(
        [sys.executable, str(REPO / "bench/index_run.py"), str(photos), "--model", str(tiny_model),
         "--library", str(tmp_path / "lib"), "--workers", "0"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    report = json.loads(out)
    assert (report["files"], report["indexed"], report["skipped"]) == (28, 27, {"not-an-image": 1})
    assert report["seconds"] > 0 and report["peak_tree_rss_mb"] > 50
    assert 0 < report["peak_tree_anon_mb"] <= report["peak_tree_rss_mb"]
    assert report["peak_largest_anon_mb"] <= report["peak_largest_rss_mb"]


def test_serve_load_reports_throughput_and_latency(photos, tiny_model, tmp_path):
    library = tmp_path / "lib"
    subprocess.run(
        [sys.executable, "-m", "mmsearch", "index", str(photos), "--library", str(library),
         "--model", str(tiny_model), "--workers", "0"],
        check=True, capture_output=True,
    )  # fmt: skip
    out = subprocess.run(
        [sys.executable, str(REPO / "bench/serve_load.py"), "--library", str(library),
         "--clients", "2", "--seconds", "1"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    report = json.loads(out)
    for kind in ("warm_search_one_client", "search", "thumbnail"):
        assert report[kind]["errors"] == 0 and report[kind]["requests"] > 0
        assert report[kind]["p50_ms"] <= report[kind]["p99_ms"]


@pytest.mark.slow
def test_query_latency_reports_warm_and_cold(tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "bench/query_latency.py"), "--images", "3000", "--arch",
         "mmsearch-tiny", "--library", str(tmp_path / "lib"), "--cold-runs", "1"],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout  # fmt: skip
    report = json.loads(out)
    assert report["warm"]["queries"] == 60 and report["warm"]["p50_ms"] > 0
    assert set(report["warm"]["encode_p50_ms_by_text_precision"]) == {"fp32", "bf16", "int8"}
    assert report["cold"]["repeated_query_median_s"] > 0
    assert set(report["cold"]["breakdown_s"]) == {
        "imports", "open_library", "encode_query", "load_index", "search_and_metadata",
    }  # fmt: skip
    assert report["cold"]["torch_imported"] is False  # the exported text tower answered


def test_ann_recall_reports_recall_latency_and_memory():
    out = subprocess.run(
        [sys.executable, str(REPO / "bench/ann_recall.py"), "--vectors", "40000", "--dim", "32",
         "--queries", "20"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    report = json.loads(out)
    assert report["cells"] > 0 and report["probes"] > 0  # past FLAT_LIMIT: IVF
    assert report["exact_mode_recall@10"] == 1.0 and 0 < report["recall@10"] <= 1
    assert report["memory"]["file_bytes_per_vector"] > 32 * 4
    assert report["memory"]["mapped"]["anonymous_mb"] > 0
    writing = report["memory"]["writing_changes"]
    assert writing["count"] == 40_000 + writing["added"] and writing["anonymous_peak_mb"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("model", ["clipart-mini", OFFLINE_MODEL])  # open_clip, towers
def test_ingest_reports_every_stage_and_the_ratios(model):
    out = subprocess.run(
        [sys.executable, str(REPO / "bench/ingest.py"), str(REPO / "sample_corpus/images"),
         "--model", model, "--limit", "64", "--image-precision", "fp32"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    report = json.loads(out)
    rates = report["images_per_second"]
    assert report["model"] == model
    assert report["images"] == 64 and report["image_precision"] == "fp32"
    assert set(rates) == {"encoder", "decode", "index", "naive", "both"}
    assert all(rate > 0 for rate in rates.values())
    assert rates["both"] < min(rates["encoder"], rates["decode"])
    assert report["index_vs_both"] == pytest.approx(rates["index"] / rates["both"], rel=0.01)


def test_encoders_report_images_and_text_queries():
    out = subprocess.run(
        [sys.executable, str(REPO / "bench/encoders.py"), "--presets", "clipart-mini",
         "--images", "32", "--json"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    (row,) = json.loads(out[out.index("[") :])
    assert row["preset"] == "clipart-mini" and row["images_per_s_fp32"] > 0
    assert row["images_per_s"] > 0 and row["text_ms"] > 0 and row["text_ms_full"] > 0


def test_decode_cost_reports_each_folder(photos, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    save_camera_raw(raw / "photo.dng", drawing(), preview_size=400)
    out = subprocess.run(
        [sys.executable, str(REPO / "bench/decode_cost.py"), str(photos), str(raw),
         "--repeat", "1"], capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    report = json.loads(out)
    assert [report[str(f)]["files"] for f in (photos, raw)] == [27, 1]
    assert all(0 < r["fastest_ms"] <= r["median_ms"] for r in report.values())
    assert report[str(raw)]["last_picture"] == "904x1280 RAW decoded at 283x400"


def test_content_hash_reports_both_algorithms(photos):
    out = subprocess.run(
        [sys.executable, str(REPO / "bench/content_hash.py"), str(photos), "--workers", "0",
         "--rounds", "1"], capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    report = json.loads(out)
    assert report["files"] == 27
    assert all(len(r) == 1 and r[0] > 0 for r in report["files_per_second"].values())


def test_tower_rewrite_times_each_variant_at_each_precision():
    out = subprocess.run(
        [sys.executable, str(REPO / "bench/tower_rewrite.py"), "--reps", "1", "--batch", "2"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    rows = [line for line in out.splitlines() if "img/s" in line]
    assert len(rows) in (3, 6)  # fp32, and bf16 where the CPU has it
    assert any(line.startswith("fp32  and SAME padding without a copy") for line in rows)


@pytest.mark.slow
def test_pgvector_recall_reports_both_stores_and_the_filters():
    """Against a real server the script starts; small, so that pgvector's graph holds it all."""
    out = subprocess.run(
        [sys.executable, str(REPO / "bench/pgvector_recall.py"), "--vectors", "3000",
         "--queries", "20", "--load", "bulk"],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    report = json.loads(out)
    assert report["pg_index_build_s"] > 0 and report["pg_index_bytes_per_vector"] > 2048
    for row in ("pg_hnsw_ef400", "pg_filter_1%", "pg_filter_50%", "pg_filter_1%_as_id_array",
                "faiss", "faiss_filter_1%"):  # fmt: skip
        assert report[row]["filled"] == 10 and report[row]["recall"] >= 0.9, row
    assert report["pg_exact"]["recall"] == 1.0


def test_hubness_rescores_a_hub_and_reports_plain_scores_as_eval_does(tiny_model):
    """bench/hubness.py: its plain scores are ``mmsearch eval``'s, and CSLS puts each image's
    own caption above a caption that sits close to every image (a hub)."""
    import importlib.util

    from mmsearch.encoders.base import create_encoder
    from mmsearch.encoders.registry import resolve_model
    from mmsearch.train.from_files import evaluate_file

    spec = importlib.util.spec_from_file_location("hubness", REPO / "bench/hubness.py")
    hubness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubness)
    # Two images, their captions, and a hub caption a little nearer to each than its own.
    similarity = np.array([[0.50, 0.10, 0.52], [0.10, 0.50, 0.52]])
    assert list(similarity.argmax(axis=1)) == [2, 2]
    assert list(hubness.csls(similarity, 2).argmax(axis=1)) == [0, 1]
    assert list(hubness.inverted_softmax(similarity, 30, over_axis=0).argmax(axis=1)) == [0, 1]

    captions = REPO / "sample_corpus/captions.jsonl"
    out = subprocess.run(
        [sys.executable, str(REPO / "bench/hubness.py"), str(captions), "--model", str(tiny_model)],
        capture_output=True, text=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    report = json.loads(out)
    evaluated = evaluate_file(create_encoder(resolve_model(str(tiny_model))), captions)
    assert report["plain"] == {"t2i": evaluated.text_to_image, "i2t": evaluated.image_to_text}
    assert 0 <= report["csls_k10"]["i2t_R@10"] <= 1
