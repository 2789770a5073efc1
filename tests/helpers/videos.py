"""Real test videos, encoded by FFmpeg's own encoders through PyAV: scenes of still pictures
(sample_corpus drawings, wallpapers, plain colours), as a camera or an editor would write them."""

from __future__ import annotations

import fractions
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

BLACK = "black"


@dataclass(frozen=True)
class Scene:
    picture: str | Path | Image.Image  # a file, a picture, or BLACK
    seconds: float


def make_video(
    path: Path,
    scenes: Sequence[Scene],
    *,
    size: tuple[int, int] = (320, 240),
    fps: int = 10,
    codec: str = "libx264",
    rotation: int = 0,
    audio: bool = False,
    variable_rate: bool = False,
    keyframe_interval: int | None = None,
    creation_time: str | None = None,
) -> Path:
    """Encode ``scenes`` into ``path`` (the container from its extension).

    ``rotation``: the display rotation phones record (degrees counterclockwise, as FFmpeg's
    display matrix counts; a portrait phone video is stored sideways with -90).
    ``variable_rate``: frames at uneven intervals (as phones write in low light).
    ``keyframe_interval``: frames between keyframes, and no keyframe at scene cuts (an encoder
    without scene detection); by default the encoder's own choice (libx264 cuts at scenes).
    """
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        if creation_time:
            container.metadata["creation_time"] = creation_time
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = fractions.Fraction(1, 1000)
        if keyframe_interval:
            stream.codec_context.gop_size = keyframe_interval
            if codec == "libx264":
                stream.options = {"sc_threshold": "0", "keyint_min": str(keyframe_interval)}
        if codec == "libx265":
            stream.options = {**stream.options, "x265-params": "log-level=error"}
        elif codec == "mpeg4":
            stream.bit_rate = 2_000_000  # its default (200 kb/s) is a badly damaged copy
        if rotation:
            stream.set_display_rotation(rotation)
        sound = container.add_stream("aac", rate=44100) if audio else None
        t = 0.0
        rng = np.random.default_rng(0)
        for scene in scenes:
            pixels = _pixels(scene.picture, size)
            end = t + scene.seconds
            while t < end - 1e-9:
                frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
                frame.pts = round(t * 1000)
                for packet in stream.encode(frame):
                    container.mux(packet)
                step = 1 / fps
                t += step * (rng.choice([0.5, 1.5]) if variable_rate else 1)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            _add_tone(container, sound, t)
    return path


def _pixels(picture, size) -> np.ndarray:
    if isinstance(picture, str) and picture == BLACK:
        return np.zeros((size[1], size[0], 3), np.uint8)
    if not isinstance(picture, Image.Image):
        picture = Image.open(picture)
    picture = picture.convert("RGBA")
    white = Image.new("RGBA", picture.size, "white")
    flat = Image.alpha_composite(white, picture).convert("RGB")
    return np.asarray(ImageOps.pad(flat, size, color="white"))


def _add_tone(container, stream, seconds: float) -> None:
    import av

    samples = 1024
    for start in range(0, int(seconds * 44100), samples):
        t = (np.arange(samples) + start) / 44100
        wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 44100, start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
