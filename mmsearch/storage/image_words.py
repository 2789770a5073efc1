"""The words rows of images (``image_texts``): written with the images, replaced when their
content changes, and the words a copy of a picture shares with it."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from mmsearch.records import ImageRecord, Words
from mmsearch.storage.engine import chunked
from mmsearch.storage.schema import ImageText

# Words that come with a picture's content, which a copy of it shares (names do not; place
# names are derived from the position, a shot column).
CONTENT_KINDS = ("metadata", "ocr")


def word_row(image_id: int, words: Words) -> ImageText:
    return ImageText(**text_columns(image_id, words))


def text_columns(image_id: int, words: Words) -> dict:
    regions = [list(box) for box in words.regions] if words.regions is not None else None
    return {"image_id": image_id, "kind": words.kind, "text": words.text, "regions": regions}


def content_words(session: Session, ids: list[int]) -> dict[int, tuple[Words, ...]]:
    """Per image, the words that come with its content (a copy has the same): metadata, OCR."""
    stmt = select(ImageText.image_id, ImageText.kind, ImageText.text, ImageText.regions).where(
        ImageText.image_id.in_(ids), ImageText.kind.in_(CONTENT_KINDS)
    )
    found: dict[int, tuple[Words, ...]] = {}
    for image_id, kind, text, regions in session.execute(stmt).all():
        boxes = tuple(tuple(box) for box in regions) if regions is not None else None
        found[image_id] = (*found.get(image_id, ()), Words(kind, text, boxes))
    return found


def replace_words(session: Session, ids: list[int], records: Sequence[ImageRecord]) -> None:
    """The images' words become the records': names and the words of the content (stale once
    the content changed) always; a description given separately is kept."""
    kinds = {words.kind for r in records for words in r.texts} | {"name", *CONTENT_KINDS}
    for chunk in chunked(ids):
        session.execute(
            delete(ImageText).where(ImageText.image_id.in_(chunk), ImageText.kind.in_(kinds))
        )
    rows = [
        text_columns(image_id, words)
        for image_id, record in zip(ids, records, strict=True)
        for words in record.texts
    ]
    if rows:
        session.execute(insert(ImageText.__table__), rows)
