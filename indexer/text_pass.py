"""Reading the words of pictures the library already holds, never encoding them again: the
embedded metadata and shots (camera, place, rating) of images stored before they were kept
(schemas 5 and 6; file headers only) or whose XMP sidecar changed, and the text in the
picture of images stored by a run without ``--ocr``. Each image is read once per kind: its
words are stored even when empty."""

from __future__ import annotations

from functools import partial

from indexer.decode import Decoded, metadata_for, ocr_for
from indexer.workers import decode_all, progress_bar
from mmsearch.imaging.fingerprint import KnownContent
from mmsearch.records import Words

BATCH = 64  # images whose words are stored per transaction
_READERS = {"metadata": (metadata_for, "Reading metadata"), "ocr": (ocr_for, "Reading text")}


def read_unread_words(library, paths: list[str], kind: str, summary, run, again=()) -> int:
    """Read ``kind`` words ("metadata" or "ocr") of the stored images at ``paths`` that have
    none yet, and of those at ``again`` (whose sidecar changed), and store them; returns how
    many images were read."""
    unread = list(dict.fromkeys([*library.images.paths_without(kind, paths), *again]))
    if not unread:
        return 0
    reader, what = _READERS[kind]
    bar = progress_bar(len(unread), run.progress, what)
    options = {"ocr": run.ocr} if kind == "ocr" else {}
    read = partial(reader, max_pixels=run.max_pixels, **options)
    found, shots, sidecars = {}, {}, {}
    stored = 0

    def save() -> int:
        if kind == "metadata":  # the header read for the words has the shot too
            library.images.set_shots(shots, sidecars)
            shots.clear()
            sidecars.clear()
        count = library.images.set_texts(kind, found)
        found.clear()
        return count

    try:
        for decoded in decode_all(unread, read, run.workers, 4 * BATCH, KnownContent()):
            words = _words(decoded, kind, summary)
            summary.note_problems(decoded)
            if words is not None:
                found[decoded.path] = words
                shots[decoded.path] = decoded.shot
                sidecars[decoded.path] = decoded.sidecar_mtime_ns
            bar.update(1)
            if len(found) >= BATCH:
                stored += save()
    finally:
        if found:
            stored += save()
        bar.close()
    return stored


def _words(decoded: Decoded, kind: str, summary) -> Words | None:
    if kind == "metadata":
        return Words("metadata", decoded.text)
    if decoded.ocr is None and summary.ocr_problem is None:
        summary.ocr_problem = decoded.ocr_error or decoded.message
    return decoded.ocr
