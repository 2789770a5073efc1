"""Videos as moments: the frames worth a vector, sampled per scene, decoded through PyAV (FFmpeg).

A moment is a frame that shows something new: not blank (black, white, one colour), not
near-identical to the moment before it, and at least :data:`MIN_SPACING` seconds after it. Most
encoders put a keyframe at every scene cut and at least every few seconds, so the keyframes alone
are decoded first (a tenth of the frames or fewer, and the cheap ones). Only when they leave a gap
of more than :data:`MAX_KEYFRAME_GAP` seconds (an encoder that makes few keyframes) is the video
decoded again, its reference frames only, looking at one frame a second; even then a 4K video is
never decoded frame by frame. Frames are scaled down as they leave the decoder, so memory holds
at most :data:`MAX_MOMENTS` small pictures however long or large the video is: past the cap,
every other moment is dropped and the spacing doubles.

Phones record portrait videos sideways with a rotation in the container; frames are turned
upright as photos are by their EXIF orientation.

This module imports only PyAV, Pillow and numpy: decoder worker processes import it.
"""

from __future__ import annotations

import datetime
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from mmsearch.errors import ImageError
from mmsearch.places import checked_position

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".3gp", ".mts", ".m2ts"}
)
MAX_MOMENTS = 48  # per video: a two-hour film stays bounded (spacing ≥ 150 s there)
MIN_SPACING = 1.0  # seconds between moments
MAX_KEYFRAME_GAP = 5.0  # seconds: keyframes further apart than this may hide a scene change
STEP = 1.0  # seconds between the frames looked at when keyframes are too few
# A frame whose small grey picture spans less than this (of 255, from its 1st to its 99th
# percentile) shows nothing: black, white, one colour (a faint line drawing on white spans 20).
BLANK_RANGE = 12.0
# ...and one whose small colour picture differs from the last moment's by less than this (mean
# absolute difference, of 255) shows nothing new: a still shot, compression noise (about 1).
NEAR_IDENTICAL = 10.0
# Cosines closer than this are a tie between moments: far above float rounding (1e-6), far below
# what tells two shots apart.
POSTER_TIE = 1e-4


@dataclass(frozen=True)
class Moment:
    t: float  # seconds from the start
    image: Image.Image  # RGB, upright, its short side at least the min_size asked for


@dataclass(frozen=True)
class Video:
    """A sampled video and what its container says of it."""

    width: int  # upright, as it plays
    height: int
    duration_s: float
    format: str  # its extension: MP4, MOV, MKV, ...
    taken_at: str | None  # its creation time (local time, ISO 8601), where the container says
    moments: tuple[Moment, ...]
    problems: tuple[str, ...] = ()  # what went wrong after some moments were read (damage)
    text: str = ""  # what the container says in words: title, comment, description, keywords
    position: tuple[float, float] | None = None  # where phones record it (ISO 6709), degrees


def poster_index(vectors: np.ndarray) -> int:
    """Which of a video's moment vectors stands for the whole video (its poster): the one
    nearest to them all, the earliest where several are within rounding of the nearest.

    Why the tie rule: two moments are always equally near their mean (a·(a+b)/2 = b·(a+b)/2),
    and float rounding, which differs with the batch a frame was encoded in, would pick either;
    a run that resumes an interrupted one must store the poster a single run stores.
    """
    nearness = vectors @ vectors.mean(axis=0)
    return int(np.flatnonzero(nearness >= nearness.max() - POSTER_TIE)[0])


def is_video_path(path: str | os.PathLike[str]) -> bool:
    return os.path.splitext(os.fspath(path))[1].lower() in VIDEO_EXTENSIONS


def sample_video(path: str, min_size: int, *, max_moments: int = MAX_MOMENTS) -> Video:
    """The video's moments (see the module docstring), each scaled to ``min_size``.

    Raises:
        ImageError: with reason ``missing``, ``unreadable``, ``empty`` (no bytes or no frames),
            ``not-a-video`` (no container FFmpeg knows), ``no-video-track`` (audio only),
            ``needs-decoder`` (a codec this FFmpeg cannot decode), ``corrupt`` (damaged before
            any moment) or ``blank`` (nothing but blank frames).
    """
    with _open(path) as container:
        stream = _video_stream(container, path)
        duration = _duration(container, stream)
        width, height = stream.codec_context.width, stream.codec_context.height
        problems: list[str] = []
        keyframes = _Sampler(min_size, max_moments)
        times = []
        for t, frame in _decoded(container, stream, "NONKEY", problems):
            if not times and _quarter_turns(frame) % 2:
                width, height = height, width
            times.append(t)
            keyframes.offer(t, frame)
        if not times and not problems:
            raise ImageError(f"{path}: the video has no frames", reason="empty")
        sampler = keyframes
        if _too_sparse(times, duration) or (times and not keyframes.moments):
            container.seek(0)
            sampler, looked = _Sampler(min_size, max_moments), -STEP
            for t, frame in _decoded(container, stream, "NONREF", []):
                if t >= looked + STEP:
                    looked = t
                    sampler.offer(t, frame)
        if not sampler.moments:
            if problems:
                raise ImageError(f"{path}: corrupt video ({problems[0]})", reason="corrupt")
            raise ImageError(f"{path}: every frame of the video is blank", reason="blank")
        duration = duration or max(times, default=0.0)
        metadata = _metadata(container)
        return Video(
            width,
            height,
            round(duration, 3),
            os.path.splitext(path)[1][1:].upper(),  # MP4, MOV, MKV...: what people call them
            _creation_time(metadata),
            tuple(sampler.moments),
            tuple(problems),
            text=_text(metadata),
            position=_position(metadata),
        )


def video_metadata(path: str) -> tuple[str, tuple[float, float] | None]:
    """What the container says in words, and where it was recorded; no frame is decoded.

    Raises:
        ImageError: as :func:`sample_video`, for a file FFmpeg cannot open.
    """
    with _open(path) as container:
        metadata = _metadata(container)
    return _text(metadata), _position(metadata)


def frame_at(path: str, t: float, min_size: int) -> Image.Image:
    """The frame shown ``t`` seconds into the video (the first at or after it), upright.

    Raises:
        ImageError: as :func:`sample_video`.
    """
    with _open(path) as container:
        stream = _video_stream(container, path)
        base = stream.time_base or 1
        container.seek(max(0, int(t / base)), stream=stream, backward=True)
        last = None
        for moment, frame in _decoded(container, stream, "DEFAULT", []):
            last = frame
            if moment >= t - 1e-3:
                break
        if last is None:
            raise ImageError(f"{path}: no frame at {t:.1f} s", reason="corrupt")
        return _picture(last, min_size)


class _Sampler:
    """Keeps the moments of a stream of frames (see the module docstring)."""

    def __init__(self, min_size: int, max_moments: int):
        self.min_size, self.max_moments = min_size, max_moments
        self.spacing = MIN_SPACING
        self.moments: list[Moment] = []
        self._last: np.ndarray | None = None

    def offer(self, t: float, frame) -> None:
        if self.moments and t < self.moments[-1].t + self.spacing:
            return
        if _is_blank(frame):
            return
        small = frame.reformat(width=16, height=16, format="rgb24")
        signature = small.to_ndarray().astype(np.float32)
        if self._last is not None and np.abs(signature - self._last).mean() < NEAR_IDENTICAL:
            return
        self._last = signature
        self.moments.append(Moment(round(t, 3), _picture(frame, self.min_size)))
        if len(self.moments) > self.max_moments:
            self.moments = self.moments[::2]
            self.spacing *= 2


def _is_blank(frame) -> bool:
    grey = frame.reformat(width=64, height=64, format="gray").to_ndarray()
    low, high = np.percentile(grey, [1, 99])
    return high - low < BLANK_RANGE


def _open(path: str):
    import av

    try:
        size = os.path.getsize(path)
    except FileNotFoundError as exc:
        raise ImageError(f"{path}: file not found (moved or deleted?)", reason="missing") from exc
    except OSError as exc:
        raise ImageError(f"{path}: cannot read file ({exc.strerror})", reason="unreadable") from exc
    if size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)", reason="empty")
    try:
        return av.open(path, metadata_errors="ignore")
    except PermissionError as exc:
        raise ImageError(f"{path}: cannot read file ({exc.strerror})", reason="unreadable") from exc
    except av.error.FFmpegError as exc:
        why = exc.strerror or exc
        if _container_signature(path):
            raise ImageError(
                f"{path}: corrupt or truncated video ({why})", reason="corrupt"
            ) from exc
        raise ImageError(
            f"{path}: not a video FFmpeg can read ({why})", reason="not-a-video"
        ) from exc


def _container_signature(path: str) -> bool:
    """Whether the file starts as a video container does (MP4/MOV, Matroska/WebM, AVI, MPEG
    transport stream): then a file FFmpeg cannot open is a damaged video, not something else."""
    try:
        with open(path, "rb") as file:
            head = file.read(192)
    except OSError:
        return False
    return (
        head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free")
        or head.startswith(b"\x1a\x45\xdf\xa3")
        or (head.startswith(b"RIFF") and head[8:12] == b"AVI ")
        or (len(head) >= 189 and head[0] == head[188] == 0x47)  # TS packets: sync every 188
        or (len(head) >= 193 and head[4] == 0x47)  # M2TS: 4-byte timestamps first
    )


def _video_stream(container, path: str):
    import av

    if not container.streams.video:
        what = "audio only" if container.streams.audio else "no video or audio"
        raise ImageError(f"{path}: no video track ({what})", reason="no-video-track")
    stream = container.streams.video[0]
    try:
        context = stream.codec_context
    except av.error.FFmpegError:
        context = None
    if context is None or not av.codec.Codec(context.name, "r"):
        raise ImageError(
            f"{path}: this FFmpeg has no decoder for its video codec; mmsearch retries it when "
            "one is installed (a newer `av` package)",
            reason="needs-decoder",
        )
    stream.thread_type = "AUTO"  # frame and slice threads: FFmpeg's own pool
    return stream


def _decoded(container, stream, skip: str, problems: list[str]) -> Iterator:
    """(seconds, frame) of the frames decoded with ``skip_frame`` (NONKEY: keyframes; NONREF:
    reference frames; DEFAULT: all), until the end or the first damage (noted in problems)."""
    import av

    stream.codec_context.skip_frame = skip
    base = float(stream.time_base or 0)
    try:
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            yield max(0.0, (frame.pts - (stream.start_time or 0)) * base), frame
    except (av.error.InvalidDataError, av.error.EOFError) as exc:
        problems.append(f"damaged data ({exc.strerror or exc}); moments before it kept")
    except av.error.FFmpegError as exc:
        problems.append(f"decoding stopped ({exc.strerror or exc}); moments before it kept")


def _picture(frame, min_size: int) -> Image.Image:
    """The frame as an upright RGB picture, scaled (in FFmpeg, from the decoder's planes) so its
    short side is ``min_size`` where it is larger."""
    short = min(frame.width, frame.height)
    scale = min(1.0, min_size / short) if short else 1.0
    width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
    image = frame.reformat(width=width, height=height, format="rgb24").to_image()
    turns = _quarter_turns(frame)
    # PIL turns counterclockwise, as FFmpeg's display matrix angle counts.
    return image.rotate(90 * turns, expand=True) if turns else image


def _quarter_turns(frame) -> int:
    """Quarter turns (counterclockwise) that show the frame upright: its display matrix."""
    return round((frame.rotation or 0) / 90) % 4


def _duration(container, stream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return 0.0


def _too_sparse(times: list[float], duration: float) -> bool:
    """Whether the keyframes leave a stretch of more than MAX_KEYFRAME_GAP seconds unseen."""
    if not times:
        return False
    edges = [0.0, *sorted(times), max(duration, times[-1])]
    return max(b - a for a, b in zip(edges, edges[1:], strict=False)) > MAX_KEYFRAME_GAP


_TEXT_TAGS = ("title", "comment", "description", "keywords", "synopsis")
# ISO 6709, as phones write it (QuickTime "location", "com.apple.quicktime.location.ISO6709"):
# "+38.7223-009.1393+012.000/"
_ISO_6709 = re.compile(r"^([+-]\d+(?:\.\d+)?)([+-]\d+(?:\.\d+)?)")


def _metadata(container) -> dict[str, str]:
    return {key.lower(): value for key, value in container.metadata.items()}


def _text(metadata: dict) -> str:
    return "\n".join(metadata[k] for k in _TEXT_TAGS if metadata.get(k, "").strip())


def _position(metadata: dict) -> tuple[float, float] | None:
    for key in ("location", "com.apple.quicktime.location.iso6709", "location-eng"):
        match = _ISO_6709.match(metadata.get(key, "").strip())
        if match:
            try:
                return checked_position(float(match[1]), float(match[2]))
            except ValueError:
                return None
    return None


def _creation_time(metadata: dict) -> str | None:
    """The container's creation time (phones write it in UTC) as local time, ISO 8601."""
    stamp = metadata.get("creation_time")
    if not stamp:
        return None
    try:
        moment = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.year < 1971:  # 1904 or 1970: a camera that never set its clock
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone().replace(tzinfo=None)
    return moment.replace(microsecond=0).isoformat()
