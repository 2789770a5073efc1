"""Find the image files under the paths a user gave, the way they would expect.

Folders are walked recursively, following symbolic links to folders once each (a link loop is
noticed, not followed forever); hidden files and folders are skipped unless asked for; ``--exclude``
globs match against the path relative to the root given and against the bare name.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

from mmsearch.errors import InputError
from mmsearch.imaging.pictures import IMAGE_EXTENSIONS, is_image_path
from mmsearch.imaging.sidecar import sidecar_names, sidecar_of
from mmsearch.imaging.video import VIDEO_EXTENSIONS, is_video_path


@dataclass(frozen=True)
class FoundFile:
    path: str  # absolute
    size: int
    mtime_ns: int
    sidecar_mtime_ns: int | None = None  # of its XMP sidecar, when it has one
    inode: int | None = None  # recognises it renamed or moved (mmsearch.storage.identity)


@dataclass
class Discovery:
    files: list[FoundFile] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)  # absolute folders walked
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (path, reason, message)
    # Folders that could not be listed: what lies in them is unknown, not gone.
    unlisted: list[str] = field(default_factory=list)
    # Folders of ``never`` met under the given paths and left out (a library folder).
    left_out: list[str] = field(default_factory=list)


def discover(
    paths: list[str | os.PathLike[str]],
    *,
    include_hidden: bool = False,
    exclude: list[str] = (),
    never: list[str | os.PathLike[str]] = (),
    videos: bool = True,
) -> Discovery:
    """Image (and, with ``videos``, video) files under ``paths`` (files given directly are taken
    as they are), never from inside the folders ``never`` (mmsearch's own: the library folder,
    with its thumbnails).

    Raises:
        InputError: a path does not exist.
    """
    found = Discovery()
    seen: set[str] = set()
    never_ids = {_folder_id(p): os.fspath(p) for p in never}
    never_ids.pop(None, None)
    for given in paths:
        root = os.path.abspath(os.fspath(given))
        if not os.path.lexists(root):
            raise InputError(f"path not found: {given}")
        if os.path.isdir(root):
            found.roots.append(root)
            _walk(root, found, seen, include_hidden, list(exclude), never_ids, videos)
        elif not os.path.exists(root):
            found.problems.append((root, "unreadable", f"{root}: dangling symbolic link"))
        else:
            if not _indexed(root, videos):
                kinds = IMAGE_EXTENSIONS | (VIDEO_EXTENSIONS if videos else set())
                what = "" if videos or not is_video_path(root) else " (a video, and --no-videos)"
                raise InputError(
                    f"{given} is not a file mmsearch indexes{what} ({', '.join(sorted(kinds))})"
                )
            _add(root, found, seen, sidecar_of(root))
    return found


def _folder_id(path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino)


def _indexed(name: str, videos: bool) -> bool:
    return is_image_path(name) or (videos and is_video_path(name))


def _walk(root, found, seen, include_hidden, exclude, never_ids, videos) -> None:
    visited: set[tuple[int, int]] = set()

    def on_error(error: OSError) -> None:
        found.unlisted.append(error.filename)
        found.problems.append(
            (
                error.filename,
                "unreadable",
                f"{error.filename}: cannot read folder ({error.strerror})",
            )
        )

    for folder, dirs, files in os.walk(root, onerror=on_error, followlinks=True):
        try:
            stat = os.stat(folder)
        except OSError:
            continue
        if (stat.st_dev, stat.st_ino) in visited:  # a symlink loop or a second way in
            dirs[:] = []
            continue
        if (stat.st_dev, stat.st_ino) in never_ids:
            found.left_out.append(folder)
            dirs[:] = []
            continue
        visited.add((stat.st_dev, stat.st_ino))
        relative = os.path.relpath(folder, root)
        dirs[:] = sorted(
            d
            for d in dirs
            if (include_hidden or not d.startswith("."))
            and not _excluded(os.path.normpath(os.path.join(relative, d)), d, exclude)
        )
        names = set(files)
        for name in sorted(files):
            if not include_hidden and name.startswith("."):
                continue
            if not _indexed(name, videos):
                continue
            if _excluded(os.path.normpath(os.path.join(relative, name)), name, exclude):
                continue
            sidecar = next((n for n in sidecar_names(name) if n in names), None)
            _add(os.path.join(folder, name), found, seen, sidecar and os.path.join(folder, sidecar))


def _excluded(relative: str, name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(name, p) for p in patterns)


def _add(path: str, found: Discovery, seen: set[str], sidecar: str | None = None) -> None:
    if path in seen:
        return
    seen.add(path)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        found.problems.append(
            (shown, "bad-filename", f"{shown}: file name is not valid UTF-8; rename the file")
        )
        return
    try:
        stat = os.stat(path)
    except OSError as exc:
        reason = "unreadable"
        message = f"{path}: {'dangling symbolic link' if Path(path).is_symlink() else exc.strerror}"
        found.problems.append((path, reason, message))
        return
    try:
        sidecar_mtime_ns = os.stat(sidecar).st_mtime_ns if sidecar else None
    except OSError:
        sidecar_mtime_ns = None  # gone since the folder was listed: as if it had none
    inode = stat.st_ino or None  # 0 where the file system has no inodes
    found.files.append(FoundFile(path, stat.st_size, stat.st_mtime_ns, sidecar_mtime_ns, inode))
