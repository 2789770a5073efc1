"""Safe decoding: what a person sees, whatever the file's mode, orientation or damage."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmsearch.errors import ImageError
from mmsearch.imaging.pictures import load_image, open_picture
from tests.helpers.phone_photos import TAKEN_AT, failure_without, save_phone_photo


def _pixel(image, xy=(0, 0)):
    return image.convert("RGB").getpixel(xy)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), "red")
    image.paste((0, 0, 255), (0, 0, 10, 20))  # blue band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: display rotated 90° clockwise
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    picture = open_picture(tmp_path / "rotated.jpg")
    assert picture.image.size == (20, 40)
    assert (picture.width, picture.height) == (20, 40)
    r, g, b = _pixel(picture.image, (10, 3))  # the blue band is now on top
    assert b > 200 and r < 60


@pytest.mark.parametrize(
    "mode, colour",
    [
        pytest.param("RGBA", (255, 0, 0, 0), id="rgba"),
        pytest.param("LA", (0, 0), id="grey-alpha"),
    ],
)
def test_transparency_is_composited_on_white(tmp_path, mode, colour):
    Image.new(mode, (8, 8), colour).save(tmp_path / "clear.png")
    assert _pixel(load_image(tmp_path / "clear.png")) == (255, 255, 255)


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (4, 0, 8, 8))
    image.save(tmp_path / "p.png", transparency=0)
    decoded = load_image(tmp_path / "p.png")
    assert _pixel(decoded, (0, 0)) == (255, 255, 255)
    assert _pixel(decoded, (6, 0)) == (255, 0, 0)


def test_sixteen_bit_grey_keeps_its_range(tmp_path):
    pixels = np.full((4, 4), 40000, dtype=np.uint16)  # 61% grey, not clipped to white
    Image.fromarray(pixels).save(tmp_path / "g16.png")
    r, g, b = _pixel(load_image(tmp_path / "g16.png"))
    assert r == g == b and 150 < r < 160


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    r, g, b = _pixel(load_image(tmp_path / "cmyk.jpg"))
    assert r > 200 and g < 60 and b < 60


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ("green", "blue")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    r, g, b = _pixel(load_image(tmp_path / "a.gif"))
    assert g > 100 and b < 50


def test_decompression_bomb_refused_from_header(tmp_path):
    Image.new("L", (3000, 2000)).save(tmp_path / "big.png")
    with pytest.raises(ImageError) as caught:
        load_image(tmp_path / "big.png", max_pixels=1_000_000)
    assert caught.value.reason == "too-large"
    assert str(caught.value) == (
        f"{tmp_path / 'big.png'}: 3000x2000 is 6 megapixels, over the limit of 1 (a "
        "decompression-bomb guard); raise the limit (--max-megapixels) to index it"
    )


def test_jpeg_draft_decodes_fewer_pixels(tmp_path):
    Image.new("RGB", (2000, 1600), "orange").save(tmp_path / "photo.jpg")
    picture = open_picture(tmp_path / "photo.jpg", min_size=224)
    assert (picture.width, picture.height) == (2000, 1600)
    assert 224 <= min(picture.image.size) < 800


@pytest.mark.parametrize(
    "content, reason",
    [
        pytest.param(b"", "empty", id="zero-bytes"),
        pytest.param(b"\x00\x01 random bytes" * 10, "not-an-image", id="random-bytes"),
        pytest.param(b"\xff\xd8\xff\xe0 not really a jpeg", "corrupt", id="bad-jpeg-header"),
    ],
)
def test_broken_files_have_a_reason(tmp_path, content, reason):
    (tmp_path / "x.jpg").write_bytes(content)
    with pytest.raises(ImageError) as caught:
        load_image(tmp_path / "x.jpg")
    assert caught.value.reason == reason
    assert str(caught.value).startswith(f"{tmp_path / 'x.jpg'}: ")


def test_truncated_png(tmp_path):
    Image.effect_noise((64, 64), 50).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as caught:
        load_image(tmp_path / "cut.png")
    assert caught.value.reason == "corrupt"


def test_missing_file(tmp_path):
    with pytest.raises(ImageError) as caught:
        load_image(tmp_path / "gone.png")
    assert caught.value.reason == "missing"


def test_wrong_extension_is_decoded_by_content(tmp_path):
    Image.new("RGB", (8, 8), "blue").save(tmp_path / "really-a-png.jpg", format="PNG")
    assert _pixel(load_image(tmp_path / "really-a-png.jpg")) == (0, 0, 255)


@pytest.mark.parametrize("suffix", [".heic", ".avif"])
def test_phone_formats_decode_upright_with_their_date(tmp_path, suffix):
    upright = save_phone_photo(tmp_path / f"photo{suffix}")
    picture = open_picture(tmp_path / f"photo{suffix}")
    assert picture.image.size == upright.size == (picture.width, picture.height)
    difference = np.abs(np.asarray(picture.image, float) - np.asarray(upright, float))
    assert difference.mean() < 4  # lossy, but the same picture the same way up
    assert picture.taken_at == TAKEN_AT


def test_heic_named_jpg_is_decoded_by_content(tmp_path):
    save_phone_photo(tmp_path / "photo.heic")
    (tmp_path / "photo.heic").rename(tmp_path / "photo.jpg")
    assert open_picture(tmp_path / "photo.jpg").format == "HEIF"


def test_heic_without_a_decoder_says_what_to_install(tmp_path):
    save_phone_photo(tmp_path / "photo.heic")
    assert failure_without(tmp_path, "pi_heif", tmp_path / "photo.heic") == (
        f"needs-decoder|{tmp_path / 'photo.heic'}: reading HEIC/HEIF images needs the pi-heif "
        "package: pip install pi-heif, then index again"
    )
