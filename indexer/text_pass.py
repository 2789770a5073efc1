"""Reading the text in pictures the library already holds (``index --ocr`` over images stored
by a run without it): decoded for OCR alone in the decoder workers, never encoded again."""

from __future__ import annotations

from functools import partial

from indexer.decode import Decoded, ocr_for
from indexer.workers import decode_all, progress_bar
from mmsearch.imaging.fingerprint import KnownContent

BATCH = 64  # images whose words are stored per transaction


def read_unread_text(library, paths: list[str], summary, run) -> None:
    """OCR the stored images at ``paths`` that were never read, and store their words."""
    unread = library.images.paths_without("ocr", paths)
    if not unread:
        return
    bar = progress_bar(len(unread), run.progress, "Reading text")
    read = partial(ocr_for, max_pixels=run.max_pixels)
    found: dict = {}
    try:
        for decoded in decode_all(unread, read, run.workers, 4 * BATCH, KnownContent()):
            _take(decoded, found, summary)
            bar.update(1)
            if len(found) >= BATCH:
                summary.ocr_read += library.images.set_texts("ocr", found)
                found = {}
    finally:
        if found:
            summary.ocr_read += library.images.set_texts("ocr", found)
        bar.close()


def _take(decoded: Decoded, found: dict, summary) -> None:
    if decoded.ocr is not None:
        found[decoded.path] = decoded.ocr
    elif summary.ocr_problem is None:
        summary.ocr_problem = decoded.ocr_error or decoded.message
