"""Camera RAW files: the camera's preview when it is large enough, else the demosaiced sensor
data, upright and dated either way; damaged files and a missing decoder say what went wrong."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from indexer import index_paths
from mmsearch import open_library
from mmsearch.errors import ImageError
from mmsearch.imaging.pictures import open_picture
from mmsearch.search.terms import ImageFilter, Relevance
from tests.helpers.phone_photos import TAKEN_AT, failure_without
from tests.helpers.raw_photos import drawing, save_camera_raw

# TIFF orientation → the turn that shows the drawing as the camera recorded it.
_UPRIGHT = {
    1: None,
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_270,  # display turned 90° clockwise
    8: Image.Transpose.ROTATE_90,
}


def _difference(picture: Image.Image, expected: Image.Image) -> float:
    expected = expected.resize(picture.size, Image.Resampling.BOX)
    return float(np.abs(np.asarray(picture, float) - np.asarray(expected, float)).mean())


@pytest.fixture(scope="module")
def scene() -> Image.Image:
    return drawing()  # 904x1280


@pytest.mark.parametrize("orientation", sorted(_UPRIGHT))
@pytest.mark.parametrize("preview", [None, 400], ids=["sensor-only", "with-preview"])
def test_raw_decodes_upright_with_its_date(tmp_path, scene, orientation, preview):
    path = save_camera_raw(tmp_path / "photo.dng", scene, orientation=orientation,
                           preview_size=preview)  # fmt: skip
    turn = _UPRIGHT[orientation]
    upright = scene.transpose(turn) if turn is not None else scene
    for min_size in (None, 224):
        picture = open_picture(path, min_size=min_size)
        assert (picture.width, picture.height) == upright.size
        assert (picture.format, picture.taken_at) == ("RAW", TAKEN_AT)
        assert _difference(picture.image, upright) < 4  # the same picture, the same way up
        assert _difference(picture.image, upright.transpose(Image.Transpose.ROTATE_180)) > 15


def test_the_preview_is_decoded_when_it_is_large_enough(tmp_path, scene):
    path = save_camera_raw(tmp_path / "photo.nef", scene, preview_size=400)
    # The preview is 283x400: enough for a 224-pixel model, so the sensor data is not demosaiced.
    assert open_picture(path, min_size=224).image.size == (283, 400)
    # Not enough for 300: the sensor data at half size (452x640) is.
    assert open_picture(path, min_size=300).image.size == (452, 640)
    # The full picture is the sensor's.
    assert open_picture(path).image.size == (904, 1280)


def test_a_raw_without_a_date_has_none(tmp_path, scene):
    path = save_camera_raw(tmp_path / "photo.dng", scene, taken_at=None)
    assert open_picture(path, min_size=224).taken_at is None


@pytest.mark.parametrize(
    "damage, reason, message",
    [
        ("truncated", "corrupt", "corrupt or truncated RAW data (Input/output error)"),
        ("header", "needs-decoder", "not a camera RAW file this LibRaw can read (a damaged file,"),
        ("empty", "empty", "empty file (0 bytes)"),
    ],
)
def test_damaged_raw_files_have_a_reason(tmp_path, scene, damage, reason, message):
    path = save_camera_raw(tmp_path / "photo.cr2", scene)
    data = path.read_bytes()
    data = {"truncated": data[: len(data) // 2], "header": b"\0" * 64 + data[64:], "empty": b""}
    path.write_bytes(data[damage])
    with pytest.raises(ImageError) as failure:
        open_picture(path, min_size=224)
    assert failure.value.reason == reason
    assert str(failure.value).startswith(f"{path}: {message}")


def test_raw_over_the_pixel_limit_is_refused_before_decoding(tmp_path, scene):
    path = save_camera_raw(tmp_path / "photo.arw", scene)
    with pytest.raises(ImageError) as failure:
        open_picture(path, max_pixels=1_000_000)
    assert failure.value.reason == "too-large"
    assert "904x1280 is 1 megapixels, over the limit of 1" in str(failure.value)


def test_raw_without_rawpy_says_what_to_install(tmp_path, scene):
    path = save_camera_raw(tmp_path / "photo.dng", scene)
    assert failure_without(tmp_path, "rawpy", path) == (
        f"needs-decoder|{path}: reading camera RAW files needs the rawpy package: "
        "pip install rawpy, then index again"
    )


def test_raw_files_are_indexed_dated_and_filtered_by_type(tmp_path, scene, tiny_model):
    folder = tmp_path / "photos"
    folder.mkdir()
    save_camera_raw(folder / "with-preview.NEF", scene, preview_size=400)
    save_camera_raw(folder / "sensor-only.dng", scene, orientation=6)
    (folder / "damaged.cr2").write_bytes(b"II*\0" + b"\0" * 100)
    scene.save(folder / "drawing.png")
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        summary = index_paths(lib, [folder])  # decoder worker processes, as in a real run
        assert (summary.added, summary.skipped) == (3, {"needs-decoder": 1}), summary.to_dict()
        hits = lib.search_text("a drawing", k=10, where=ImageFilter(formats=("raw",)))
        assert sorted((h.path.rsplit("/", 1)[1], h.width, h.height, h.taken_at) for h in hits) == [
            ("sensor-only.dng", 1280, 904, TAKEN_AT),
            ("with-preview.NEF", 904, 1280, TAKEN_AT),
        ]
        again = index_paths(lib, [folder], workers=0)  # a newer LibRaw may read it now: retried
        assert (again.unchanged, again.skipped) == (3, {"needs-decoder": 1})
        assert "not retried" not in again.skipped_files[0]["message"]


def test_a_raw_and_jpeg_pair_shows_once_with_dedup(tmp_path, scene, tiny_model):
    folder = tmp_path / "photos"
    folder.mkdir()
    save_camera_raw(folder / "IMG_0001.CR2", scene, preview_size=1280)
    scene.save(folder / "IMG_0001.JPG", quality=90)  # the camera's JPEG of the same shot
    Image.new("RGB", (64, 64), "blue").save(folder / "other.png")
    with open_library(tmp_path / "lib", model=str(tiny_model)) as lib:
        index_paths(lib, [folder], workers=0)
        hits = lib.search_text("a drawing", k=3, relevance=Relevance(dedup=0.95))
    assert len(hits) == 2
    pair = next(h for h in hits if h.path.endswith(("IMG_0001.CR2", "IMG_0001.JPG")))
    assert len(pair.duplicates) == 1 and pair.duplicates[0].endswith(("CR2", "JPG"))


def test_a_preview_near_the_pixel_limit_decodes_without_pillows_bomb_warning(
    tmp_path, scene, monkeypatch
):
    """Our limit is checked against the sensor. Pillow's own is half of ours when ours is
    raised (here, scaled down: 0.6 and 1.2 MP), and it would warn (an error under pytest) about
    a preview as large as the sensor."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600_000)
    path = save_camera_raw(tmp_path / "photo.dng", scene, preview_size=1280)
    picture = open_picture(path, min_size=224, max_pixels=1_200_000)  # 904x1280 is 1.16 MP
    assert (picture.width, picture.height, picture.taken_at) == (904, 1280, TAKEN_AT)
