"""Text in the picture: `index --ocr` reads it with the real OCR engine (RapidOCR, installed by
the dev extras), stores each line with its box, and keyword search finds it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image, ImageDraw, ImageFont

from indexer import index_paths
from mmsearch import open_library
from mmsearch.imaging.ocr import ocr_available, read_lines

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ocr_available(), reason="pip install 'mmsearch[ocr]'"),
]


def sign(path, lines: list[str], size: int = 40, background="white") -> None:
    picture = Image.new("RGB", (900, 120 + 90 * len(lines)), background)
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=size)  # Pillow's own scalable font: no system fonts
    for n, line in enumerate(lines):
        draw.text((40, 50 + 90 * n), line, fill="black", font=font)
    picture.save(path)


@pytest.fixture
def folder(tmp_path, photos):
    sign(photos / "sign.png", ["Hotel Sakura", "Q3 revenue 2041"])
    return photos


def test_lines_come_with_their_boxes(tmp_path):
    sign(tmp_path / "sign.png", ["Hotel Sakura", "Q3 revenue 2041"])
    lines = read_lines(Image.open(tmp_path / "sign.png").convert("RGB"))
    assert [line.text for line in lines] == ["Hotel Sakura", "Q3 revenue 2041"]
    first, second = (line.box for line in lines)
    assert 0 <= first[0] < first[2] <= 1 and first[3] <= second[1]  # top to bottom
    assert read_lines(Image.new("RGB", (640, 480), "white")) == []


def test_index_ocr_makes_the_words_searchable(tmp_path, tiny_model, folder):
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        summary = index_paths(lib, [folder], workers=0, ocr=True)
        assert summary.ocr_read == summary.added == 28 and summary.ocr_problem is None
        hit = lib.search_text("revenue 2041", k=3, mode="keyword")[0]
        assert hit.path.endswith("sign.png")
        assert dict(hit.matched) == {"ocr": "Hotel Sakura\nQ3 revenue 2041"}
        words = {w.kind: w for w in lib.image_texts(folder / "sign.png")}
        assert words["ocr"].text == "Hotel Sakura\nQ3 revenue 2041"
        assert len(words["ocr"].regions) == 2


def test_a_later_ocr_run_reads_stored_images_without_encoding_them(tmp_path, tiny_model, folder):
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        index_paths(lib, [folder], workers=0)
        assert lib.search_text("Sakura", k=3, mode="keyword") == []
        vectors_before = lib.image_vectors(range(1, 40))
        summary = index_paths(lib, [folder], workers=0, ocr=True)
        assert (summary.added, summary.updated, summary.unchanged) == (0, 0, 28)
        assert summary.ocr_read == 28
        assert lib.search_text("Sakura", k=3, mode="keyword")[0].path.endswith("sign.png")
        assert all((lib.image_vectors([i])[i] == v).all() for i, v in vectors_before.items())
        again = index_paths(lib, [folder], workers=0, ocr=True)
        assert again.ocr_read == 0  # read once: pictures without text are not read again


def test_without_the_engine_images_are_indexed_and_the_message_says_how(
    tmp_path, folder, tiny_model
):
    code = (
        "import sys; sys.modules['rapidocr_onnxruntime'] = None\n"
        "from mmsearch.cli import main\n"
        f"sys.argv = ['mmsearch', 'index', {str(folder)!r}, '--ocr', '--library', "
        f"{str(tmp_path / 'lib')!r}, '--model', {str(tiny_model)!r}, '--workers', '0']\n"
        "main()\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("added 28,")
    assert "OCR: text in the pictures was not read: no OCR engine; install it with " in run.stderr
    assert "pip install 'mmsearch[ocr]'" in run.stderr


def test_the_cli_reads_text_with_ocr(cli, folder):
    result = cli("index", str(folder), "--ocr", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ocr_read"] == 28
    hits = json.loads(cli("search", "Sakura", "--mode", "keyword", "--json").stdout)
    assert hits[0]["path"].endswith("sign.png") and "ocr" in hits[0]["matched"]


# A Japanese font from the system (Pillow's own font has no kana): .ci/run installs Debian's
# fonts-ipafont-gothic with Tesseract and its Japanese data.
JAPANESE_FONT = "/usr/share/fonts/opentype/ipafont-gothic/ipag.ttf"
JAPANESE_SIGN = ["ホテルさくらの領収書", "京都駅から徒歩五分", "Total 3,200 yen"]


def japanese_sign(path) -> None:
    picture = Image.new("RGB", (900, 120 + 90 * len(JAPANESE_SIGN)), "white")
    draw = ImageDraw.Draw(picture)
    font = ImageFont.truetype(JAPANESE_FONT, 40)  # missing: fails, as a missing engine would
    for n, line in enumerate(JAPANESE_SIGN):
        draw.text((40, 50 + 90 * n), line, fill="black", font=font)
    picture.save(path)


def test_japanese_lines_are_read_by_tesseract(tmp_path):
    japanese_sign(tmp_path / "receipt.png")
    picture = Image.open(tmp_path / "receipt.png").convert("RGB")
    lines = read_lines(picture, "ja")
    assert [line.text for line in lines] == JAPANESE_SIGN  # kana and kanji, no stray spaces
    assert all(0 <= line.box[0] < line.box[2] <= 1 for line in lines)
    assert lines[0].box[3] <= lines[1].box[1]
    # What the default engine makes of it: Chinese characters, but not the kana.
    default = " ".join(line.text for line in read_lines(picture))
    assert "ホテルさくら" not in default


def test_index_with_japanese_ocr_finds_the_receipt(cli, photos):
    japanese_sign(photos / "receipt.png")
    result = cli("index", str(photos), "--ocr-language", "ja", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ocr_read"] == 28
    for query in ("領収書", "さくら", "京都駅"):  # two and three characters, kana and kanji
        hits = json.loads(cli("search", query, "--mode", "keyword", "--json").stdout)
        assert hits and hits[0]["path"].endswith("receipt.png"), query
    text = json.loads(cli("text", str(photos / "receipt.png"), "--json").stdout)
    assert [t["text"] for t in text if t["kind"] == "ocr"] == ["\n".join(JAPANESE_SIGN)]


def test_japanese_ocr_without_tesseract_indexes_and_says_how(tmp_path, tiny_model, photos,
                                                               monkeypatch):  # fmt: skip
    from mmsearch.imaging import tesseract

    monkeypatch.setenv("PATH", str(tmp_path))  # no tesseract program to be found
    tesseract.installed_languages.cache_clear()
    try:
        with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
            summary = index_paths(lib, [photos], workers=0, ocr="ja")
    finally:
        tesseract.installed_languages.cache_clear()
    assert summary.added == 27 and summary.ocr_read == 0
    assert "sudo apt install tesseract-ocr tesseract-ocr-jpn" in summary.ocr_problem


def test_an_unknown_ocr_language_is_refused(cli, photos):
    result = cli("index", str(photos), "--ocr-language", "fr")
    assert result.exit_code == 1
    assert "OCR language 'fr' is not one mmsearch reads (ja: Japanese and English" in result.stderr
    assert not cli.library.exists() or not any(cli.library.iterdir())
