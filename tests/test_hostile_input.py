"""One folder with everything a real photo collection throws at an indexer, through the real CLI.

Every file must end up indexed or skipped with a precise reason, and the run must complete. The
inputs are generated here; no binary fixtures are committed.
"""

from __future__ import annotations

import io
import json
import os
import random
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from indexer import index_paths
from indexer import pipeline as pipeline_module
from mmsearch import open_library
from mmsearch.errors import LibraryError


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size in its header and has no pixels: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _frames(colours) -> list[Image.Image]:
    return [Image.new("RGB", (40, 30), c) for c in colours]


def _hostile_folder(root: Path) -> tuple[set[str], dict[str, str]]:
    """Writes the folder; returns (names that must be indexed, name → expected skip reason)."""
    root.mkdir()
    photo = Image.new("RGB", (64, 48), (200, 120, 40))
    files = {
        "plain.jpg": _encoded(photo, "JPEG"),
        "png_named.jpg": _encoded(photo, "PNG"),  # wrong extension: decoded by content
        "wide.png": _encoded(Image.new("RGB", (100_000, 1), "blue"), "PNG"),
        "tall.png": _encoded(Image.new("RGB", (1, 100_000), "red"), "PNG"),
        "dot.png": _encoded(Image.new("RGB", (1, 1), "green"), "PNG"),
        "sixteen.png": _encoded(Image.new("I;16", (32, 32), 40000), "PNG"),
        "cmyk.jpg": _encoded(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG"),
        "animated.gif": _encoded(
            _frames(["red", "blue"])[0], "GIF", save_all=True, append_images=_frames(["blue"])
        ),
        "animated.webp": _encoded(
            _frames(["red"])[0], "WEBP", save_all=True, append_images=_frames(["blue", "green"])
        ),
        "zero.png": b"",
        "truncated.jpg": _encoded(photo, "JPEG")[:300],
        "truncated.png": _encoded(Image.effect_noise((64, 64), 40).convert("RGB"), "PNG")[:400],
        "random.jpg": random.Random(3).randbytes(5000),
        "bomb.png": _png_header_only(20_000, 10_000),  # 200 megapixels claimed
    }
    exif = Image.Exif()
    exif[0x0112] = 6
    files["rotated.jpg"] = _encoded(photo, "JPEG", exif=exif)
    for name, data in files.items():
        (root / name).write_bytes(data)
    # A path far longer than any one name may be (PATH_MAX is 4096, NAME_MAX 255).
    deep = root.joinpath(*["d" * 200] * 15)
    deep.mkdir(parents=True)
    (deep / "deep.jpg").write_bytes(files["plain.jpg"])
    (root / "loop").symlink_to(root)  # a symlink loop
    (root / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    (root / os.fsdecode(b"caf\xe9.jpg")).write_bytes(files["plain.jpg"])  # Latin-1 name
    indexed = {
        "plain.jpg", "png_named.jpg", "wide.png", "tall.png", "dot.png", "sixteen.png",
        "cmyk.jpg", "animated.gif", "animated.webp", "rotated.jpg", "deep.jpg",
    }  # fmt: skip
    skipped = {
        "zero.png": "empty",
        "truncated.jpg": "corrupt",
        "truncated.png": "corrupt",
        "random.jpg": "not-an-image",
        "bomb.png": "too-large",
        "dangling.jpg": "unreadable",  # a link to nowhere
        "caf\ufffd.jpg": "bad-filename",
    }
    return indexed, skipped


def test_every_hostile_file_is_indexed_or_skipped_with_its_reason(cli, tmp_path):
    folder = tmp_path / "hostile"
    indexed, skipped = _hostile_folder(folder)
    result = cli("index", str(folder), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)

    reasons = {Path(s["path"]).name: s["reason"] for s in summary["skipped_files"]}
    assert reasons == skipped
    hits = json.loads(cli("search", "anything", "-k", "100", "--json").stdout)
    assert {Path(h["path"]).name for h in hits} == indexed
    by_name = {Path(h["path"]).name: h for h in hits}
    assert (by_name["rotated.jpg"]["width"], by_name["rotated.jpg"]["height"]) == (48, 64)
    assert (by_name["wide.png"]["width"], by_name["wide.png"]["height"]) == (100_000, 1)
    assert len(by_name["deep.jpg"]["path"]) > 3000

    again = json.loads(cli("index", str(folder), "--json").stdout)
    assert again["unchanged"] == len(indexed)
    assert again["added"] == again["updated"] == 0 and again["skipped"] == summary["skipped"]


def test_file_that_vanishes_between_discovery_and_decoding(tmp_path, tiny_model, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(3):
        Image.new("RGB", (40, 40), (n * 80, 0, 0)).save(folder / f"{n}.png")
    real_discover = pipeline_module.discover

    def discover_then_lose_one(*args, **kwargs):
        found = real_discover(*args, **kwargs)
        (folder / "1.png").unlink()  # gone before the decoder gets to it
        return found

    monkeypatch.setattr(pipeline_module, "discover", discover_then_lose_one)
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        summary = index_paths(lib, [folder], workers=0)
        assert summary.added == 2
        assert [(s["reason"], s["message"]) for s in summary.skipped_files] == [
            ("missing", f"{folder / '1.png'}: file not found (moved or deleted?)")
        ]
        monkeypatch.setattr(pipeline_module, "discover", real_discover)
        again = index_paths(lib, [folder], workers=0)
        assert (again.unchanged, again.skipped_total) == (2, 0)  # forgotten once truly gone
        assert lib.info().skipped_files == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_library_folder(tmp_path, tiny_model):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (40, 40), "red").save(folder / "a.png")
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        index_paths(lib, [folder], workers=0)
    Image.new("RGB", (40, 40), "blue").save(folder / "b.png")
    os.chmod(tmp_path / "lib", 0o555)
    try:
        with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
            with pytest.raises(LibraryError, match="read-only"):
                index_paths(lib, [folder], workers=0)
            assert [h.path for h in lib.search_text("red", k=5)] == [str(folder / "a.png")]
    finally:
        os.chmod(tmp_path / "lib", 0o755)


def test_full_disk_is_a_clear_error_and_the_library_stays_intact(tmp_path, tiny_model):
    """A file-size limit (RLIMIT_FSIZE) makes writes fail as a full disk would: the library opens
    (its files are small), and the first batch cannot be written."""
    import resource
    import signal
    import subprocess
    import sys

    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(3):
        Image.new("RGB", (40, 40), (250, n * 10, 0)).save(folder / f"red{n}.png")
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        index_paths(lib, [folder], workers=0)
    for n in range(40):
        Image.new("RGB", (40, 40), (0, n * 5, 250)).save(folder / f"blue{n}.png")

    limit = max(32768, (tmp_path / "lib" / "library.db").stat().st_size) + 4096

    def full_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write (EFBIG), do not kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    run = subprocess.run(
        [sys.executable, "-m", "mmsearch", "index", str(folder), "--library", str(tmp_path / "lib"),
         "--model", str(tiny_model), "--workers", "0"],
        capture_output=True, text=True, preexec_fn=full_disk, timeout=300,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert run.stderr.startswith(f"Error: could not write to library {tmp_path / 'lib'}: ")
    assert "(is the disk full, the folder read-only, or another process writing?)" in run.stderr

    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        from mmsearch.checking import check_library

        stored = lib.info().images
        assert (stored - 3) % 32 == 0  # the old images and whole batches: nothing half-written
        assert {"red0.png", "red1.png", "red2.png"} <= {
            Path(h.path).name for h in lib.search_text("red", k=50)
        }
        assert check_library(lib) == []
        assert index_paths(lib, [folder], workers=0).added == 43 - stored  # it carries on later


def test_photos_skipped_for_want_of_a_decoder_are_indexed_once_it_is_installed(
    tmp_path, tiny_model
):
    import subprocess
    import sys

    from tests.helpers.phone_photos import save_phone_photo, without

    folder = tmp_path / "photos"
    folder.mkdir()
    save_phone_photo(folder / "phone.heic")
    Image.new("RGB", (40, 40), "red").save(folder / "red.png")
    index = [sys.executable, "-m", "mmsearch", "index", str(folder), "--library",
             str(tmp_path / "lib"), "--model", str(tiny_model), "--json"]  # fmt: skip
    run = subprocess.run(index, env=without(tmp_path, "pi_heif"), capture_output=True, text=True)
    summary = json.loads(run.stdout)
    assert (summary["added"], summary["skipped"]) == (1, {"needs-decoder": 1}), run.stderr
    assert "pip install pi-heif" in summary["skipped_files"][0]["message"]

    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        summary = index_paths(lib, [folder], workers=0)  # pi-heif installed now
        assert (summary.added, summary.unchanged, summary.skipped) == (1, 1, {})
