"""Phone photos for tests: a real drawing saved as HEIC or AVIF the way a phone saves a photo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from mmsearch.imaging.pictures import open_picture

DRAWING = next(Path(__file__).parents[2].glob("sample_corpus/images/animals/*/*.png"))
TAKEN_AT = "2024-07-14T18:30:05"
TAKEN_IN = (38.7139, -9.1394)  # downtown Lisbon, as the phone's GPS wrote it


def save_phone_photo(path: Path) -> Image.Image:
    """Write DRAWING to ``path`` (HEIC or AVIF by its suffix) turned a quarter by EXIF, with a
    date and a GPS position; returns the picture as it should decode: upright."""
    picture = open_picture(DRAWING).image
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90° clockwise
    exif.get_ifd(0x8769)[0x9003] = TAKEN_AT.replace("-", ":").replace("T", " ")  # DateTimeOriginal
    gps, (latitude, longitude) = exif.get_ifd(0x8825), TAKEN_IN
    gps[1], gps[2] = "N", (IFDRational(round(latitude * 10**4), 10**4), 0, 0)
    gps[3], gps[4] = "W", (IFDRational(round(-longitude * 10**4), 10**4), 0, 0)
    if path.suffix == ".heic":
        import pillow_heif  # the encoder; mmsearch decodes with pi-heif

        pillow_heif.from_pillow(picture).save(path, exif=exif.tobytes(), quality=95)
    else:  # (Pillow's AVIF writer drops the date when given an Exif object rather than bytes)
        picture.save(path, exif=exif.tobytes(), quality=95)
    return picture.transpose(Image.Transpose.ROTATE_270)


def without(tmp_path: Path, module: str) -> dict:
    """An environment (for a subprocess and its workers) where ``module`` cannot be imported."""
    shadow = tmp_path / f"no-{module}"
    shadow.mkdir(exist_ok=True)
    (shadow / f"{module}.py").write_text("raise ImportError('not installed')\n")
    return {**os.environ, "PYTHONPATH": str(shadow)}


def failure_without(tmp_path: Path, module: str, path: Path) -> str:
    """How ``open_picture(path)`` fails in a new process where ``module`` cannot be imported:
    "reason|message"."""
    code = (
        "import sys\n"
        "from mmsearch.imaging.pictures import open_picture\n"
        "from mmsearch.errors import ImageError\n"
        "try:\n    open_picture(sys.argv[1])\n"
        "except ImageError as exc:\n    print(exc.reason, exc, sep='|')\n"
    )
    run = subprocess.run([sys.executable, "-c", code, str(path)], env=without(tmp_path, module),
                         capture_output=True, text=True, check=True)  # fmt: skip
    return run.stdout.strip()
