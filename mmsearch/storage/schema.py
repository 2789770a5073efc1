"""The library database schema (SQLAlchemy 2.x). SQLite by default; any SQLAlchemy URL works.

The database is the source of truth: item metadata *and* embedding vectors live here, FAISS
indexes are rebuilt from it. ``settings.generation.<modality>`` increases in the same
transaction as every change to that modality's vectors, which is how a saved index knows whether
it is current.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# 2: images.content_hash; 3: images.taken_at, taken_from; 4: query_cache;
# 5: image_texts, and the camera columns of images; 6: GPS positions, place names, ratings
# and XMP sidecars; 7: videos (images.duration_s, poster_t, and their moments)
SCHEMA_VERSION = 7


class Base(DeclarativeBase):
    pass


class Setting(Base):
    """Library-wide key → JSON value: schema version, model identity, generations."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[object] = mapped_column(JSON)


class ImageRow(Base):
    """One indexed image file; ``id`` is also its id in the image vector index."""

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    format: Mapped[str | None] = mapped_column(String(16))
    # 128 bits of the file's BLAKE3 (BLAKE2b in libraries made before it, as their "content_hash"
    # setting says): recognises moved, renamed and duplicate files (their
    # embedding is reused) and files touched without being changed. None in libraries from
    # schema 1 until the file changes.
    content_hash: Mapped[str | None] = mapped_column(String(32), index=True)
    # When the picture was taken, ISO 8601 local time: EXIF DateTimeOriginal when the file has
    # it ("exif"), else its modification time ("mtime"). What date filters and --sort date use.
    taken_at: Mapped[str | None] = mapped_column(String(19), index=True)
    taken_from: Mapped[str | None] = mapped_column(String(8))
    # How it was taken, from EXIF or RAW metadata (schema 5); NULL where the file does not say.
    camera_make: Mapped[str | None] = mapped_column(String(120))
    camera_model: Mapped[str | None] = mapped_column(String(120), index=True)
    lens: Mapped[str | None] = mapped_column(String(120))
    focal_mm: Mapped[float | None] = mapped_column(Float)
    focal_35mm: Mapped[float | None] = mapped_column(Float)
    aperture: Mapped[float | None] = mapped_column(Float)
    exposure_s: Mapped[float | None] = mapped_column(Float)
    iso: Mapped[int | None] = mapped_column(Integer)
    # Where (schema 6): GPS decimal degrees, and the nearest town's names (mmsearch.places)
    latitude: Mapped[float | None] = mapped_column(Float, index=True)
    longitude: Mapped[float | None] = mapped_column(Float)
    place_city: Mapped[str | None] = mapped_column(String(120))
    place_region: Mapped[str | None] = mapped_column(String(120))
    place_country: Mapped[str | None] = mapped_column(String(120))
    country_code: Mapped[str | None] = mapped_column(String(2), index=True)
    # The photographer's rating (XMP stars, -1 rejected), and the modification time of the XMP
    # sidecar read with the file (schema 6): a changed sidecar is read again, nothing encoded.
    rating: Mapped[int | None] = mapped_column(Integer)
    sidecar_mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    # The file's inode (schema 6): a renamed or moved file is recognised without reading it
    # (mmsearch.storage.identity). NULL where the file system has none.
    inode: Mapped[int | None] = mapped_column(BigInteger, index=True)
    # A video (schema 7): its length in seconds, and the moment whose frame stands for it (its
    # poster: ``embedding`` is that moment's vector); NULL for a picture.
    duration_s: Mapped[float | None] = mapped_column(Float, index=True)
    poster_t: Mapped[float | None] = mapped_column(Float)
    indexed_at: Mapped[float] = mapped_column(Float)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)


class MomentRow(Base):
    """A moment of a video: a frame sampled from it (mmsearch.imaging.video), ``t`` seconds in;
    ``id`` is also its id in the moment vector index. A search finds a video by its moments."""

    __tablename__ = "moments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    t: Mapped[float] = mapped_column(Float)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)


class ImageText(Base):
    """Words that go with an image, by kind: ``name`` (its file and folder names), ``metadata``
    (what photo tools wrote into it), ``description`` (given with ``index --descriptions``),
    ``ocr`` (text in the picture, ``index --ocr``; empty when OCR found none), ``place``
    (the names of where it was taken, from its GPS position).
    On SQLite the keyword index ``image_words`` (FTS5, trigrams) follows this table through
    triggers, in the same transactions (see :data:`FTS_DDL`)."""

    __tablename__ = "image_texts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    regions: Mapped[list | None] = mapped_column(JSON)  # OCR: each line's box (Words.regions)


# SQLite's keyword index over image_texts: trigrams match substrings, and Japanese or Chinese
# text, which has no spaces; case-insensitive. Kept in step by triggers (an external-content
# FTS5 table stores no copy of the text).
KEYWORD_INDEX = "image_words"
FTS_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS image_words USING fts5(text, content='image_texts', "
    "content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER IF NOT EXISTS image_texts_insert AFTER INSERT ON image_texts BEGIN "
    "INSERT INTO image_words(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER IF NOT EXISTS image_texts_delete AFTER DELETE ON image_texts BEGIN "
    "INSERT INTO image_words(image_words, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER IF NOT EXISTS image_texts_update AFTER UPDATE ON image_texts BEGIN "
    "INSERT INTO image_words(image_words, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO image_words(rowid, text) VALUES (new.id, new.text); END",
)


class SkippedFile(Base):
    """A file that could not be indexed, with why; not retried until its size or mtime change."""

    __tablename__ = "skipped_files"

    path: Mapped[str] = mapped_column(Text, primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)


class Collection(Base):
    """A named set of texts (captions, descriptions) searched by image."""

    __tablename__ = "collections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    source: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)

    texts: Mapped[list[TextRow]] = relationship(
        back_populates="collection", cascade="all, delete-orphan", passive_deletes=True
    )


class TextRow(Base):
    """One text of a collection; ``id`` is also its id in the text vector index."""

    __tablename__ = "texts"
    __table_args__ = (UniqueConstraint("collection_id", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), index=True
    )
    external_id: Mapped[str | None] = mapped_column(String(500))
    text: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict | None] = mapped_column(JSON)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)

    collection: Mapped[Collection] = relationship(back_populates="texts")


class CachedQuery(Base):
    """A text query's embedding, kept so that asking again needs no model at all: a repeated
    ``mmsearch search`` neither imports torch nor loads the text tower."""

    __tablename__ = "query_cache"

    text: Mapped[str] = mapped_column(Text, primary_key=True)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[float] = mapped_column(Float, index=True)
