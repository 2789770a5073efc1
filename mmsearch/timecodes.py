"""Times in a video as people write them: ``02:14``, ``1:02:14``, ``134.2`` (seconds)."""

from __future__ import annotations

import re

from mmsearch.errors import InputError

_CLOCK = re.compile(r"(?:(\d+):)?(\d+):(\d\d(?:\.\d+)?)")


def clock(seconds: float) -> str:
    """``seconds`` as players show them: ``02:14``, ``1:02:14``."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


def parse_clock(value: str) -> float:
    """Seconds from ``02:14``, ``1:02:14`` or ``134.2``.

    Raises:
        InputError: not a time.
    """
    text = value.strip()
    match = _CLOCK.fullmatch(text)
    if match:
        hours, minutes, seconds = match.groups()
        return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if seconds >= 0:
        return seconds
    raise InputError(f"{value!r} is not a time in a video; write 02:14, 1:02:14 or 134.2")


def split_moment(spec: str) -> tuple[str, float | None]:
    """``clip.mp4@02:14`` → (``clip.mp4``, 134.0); a spec without ``@time`` → (spec, None).
    Only a time after the last ``@`` counts, so file names with ``@`` in them still work."""
    path, at, time = spec.rpartition("@")
    if not at or not path or not _looks_like_time(time):
        return spec, None
    return path, parse_clock(time)


def _looks_like_time(text: str) -> bool:
    return bool(re.fullmatch(r"[\d:.]+", text.strip()))
