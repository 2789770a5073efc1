"""The image catalogue: every indexed image's row (metadata and vector), the files that could not
be indexed, and the folders indexing covers. The indexer writes here; searches read here.

Each write is one transaction under the writer lock; after it commits, the derived vector index
is told what changed (see :mod:`mmsearch.index.derived`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
from sqlalchemy import and_, delete, false, func, insert, or_, select, update
from sqlalchemy.orm import Session

from mmsearch.imaging.exif import Shot
from mmsearch.imaging.fingerprint import KnownContent
from mmsearch.paths import as_folder, is_at_or_under
from mmsearch.records import ImageRecord, Words
from mmsearch.results import ImageHit
from mmsearch.storage.engine import (
    HEADERS_OUTDATED,
    bump_generation,
    chunked,
    get_setting,
    set_setting,
)
from mmsearch.storage.identity import FileIdentity
from mmsearch.storage.image_words import content_words, replace_words, word_row
from mmsearch.storage.moments import (
    VideoMoments,
    drop_moments,
    load_moments,
    replace_moments,
)
from mmsearch.storage.place_names import (
    PlaceCount,
    count_places,
    place_columns,
    replace_place_words,
)
from mmsearch.storage.schema import ImageRow, ImageText, Setting, SkippedFile

SHOT_COLUMNS = tuple(f.name for f in dataclasses.fields(Shot))


class StoredFile(NamedTuple):
    id: int
    size: int
    mtime_ns: int
    content_hash: str | None
    sidecar_mtime_ns: int | None = None  # of the XMP sidecar read with it
    inode: int | None = None


class StoredImage(NamedTuple):
    """A stored image as a query image: its vector and what tells whether the file changed."""

    id: int
    size: int
    mtime_ns: int
    content_hash: str | None
    vector: np.ndarray


class ImageCatalogue(FileIdentity, VideoMoments):
    """The images of one library (see the module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        with Session(self._engine) as session:
            # Libraries made before BLAKE3 have no setting: their rows hold BLAKE2b hashes.
            self.hash_algorithm = get_setting(session, "content_hash", "blake2b")

    # -- what the indexer reads ----------------------------------------------------------------

    def image_state(self, under: Sequence[str] | None = None) -> dict[str, StoredFile]:
        """path → what is stored of each image, optionally only those at or below the given
        absolute paths (folders or files)."""
        stmt = select(ImageRow.path, ImageRow.id, ImageRow.size, ImageRow.mtime_ns,
                      ImageRow.content_hash, ImageRow.sidecar_mtime_ns, ImageRow.inode)  # fmt: skip
        if under is not None:
            # Ranges of the path index: only the rows asked for are read, not the whole library.
            stmt = stmt.where(or_(false(), *(_at_or_below(p) for p in under)))
        with Session(self._engine) as session:
            rows = session.execute(stmt).all()
        return {path: StoredFile(*rest) for path, *rest in rows}

    def skipped_state(self) -> dict[str, tuple[int, int, str, str]]:
        """path → (size, mtime_ns, reason, message) of files recorded as not indexable."""
        with Session(self._engine) as session:
            rows = session.execute(select(SkippedFile)).scalars().all()
            return {r.path: (r.size, r.mtime_ns, r.reason, r.message) for r in rows}

    def known_content(self) -> KnownContent:
        """The content hashes of every stored image, compactly (see KnownContent)."""
        stmt = select(ImageRow.content_hash).where(ImageRow.content_hash.is_not(None))
        with Session(self._engine) as session:
            rows = session.execute(stmt.execution_options(yield_per=10_000))
            return KnownContent(rows.scalars())

    def images_by_hash(self, hashes: Iterable[str]) -> dict[str, tuple[ImageRecord, np.ndarray]]:
        """content hash → (a stored image with that content, with the words that come with its
        content: metadata and OCR; and its vector), for those stored."""
        found = {}
        with Session(self._engine) as session:
            for chunk in chunked(sorted(set(hashes))):
                stmt = select(ImageRow).where(ImageRow.content_hash.in_(chunk))
                rows = session.execute(stmt).scalars().all()
                words = content_words(session, [r.id for r in rows])
                moments = load_moments(session, [r.id for r in rows if r.duration_s is not None])
                for row in rows:
                    vector = np.frombuffer(row.embedding, np.float32)
                    record = _record(row, words.get(row.id, ()), moments.get(row.id, ()))
                    found[row.content_hash] = (record, vector)
        return found

    def set_texts(self, kind: str, texts: dict[str, str | Words]) -> int:
        """Replace the ``kind`` words of the images at these paths (absolute; a text, or Words
        with regions); returns how many images were found. Nothing is encoded."""
        with self._write() as session:
            ids = {}
            for chunk in chunked(list(texts)):
                stmt = select(ImageRow.path, ImageRow.id).where(ImageRow.path.in_(chunk))
                ids.update(session.execute(stmt).all())
            for chunk in chunked(list(ids.values())):
                session.execute(
                    delete(ImageText).where(ImageText.image_id.in_(chunk), ImageText.kind == kind)
                )
            for path, image_id in ids.items():
                words = texts[path] if isinstance(texts[path], Words) else Words(kind, texts[path])
                session.add(word_row(image_id, words._replace(kind=kind)))
        return len(ids)

    def set_shots(self, settings: dict[str, Shot], sidecars: dict[str, int | None]) -> None:
        """Store how and where the images at these paths were taken (read from their headers
        and sidecars, whose modification times are ``sidecars``), with the places' names."""
        paths, shots = list(settings), list(settings.values())
        places = place_columns(shots)
        with self._write() as session:
            ids = {}
            for chunk in chunked(paths):
                stmt = select(ImageRow.path, ImageRow.id).where(ImageRow.path.in_(chunk))
                ids.update(session.execute(stmt).all())
            for path, shot, place in zip(paths, shots, places, strict=True):
                values = {**shot.as_columns(), **place, "sidecar_mtime_ns": sidecars.get(path)}
                session.execute(update(ImageRow).where(ImageRow.path == path).values(**values))
            placed = zip(paths, places, strict=True)
            replace_place_words(session, [(ids[p], place) for p, place in placed if p in ids])

    def headers_outdated(self) -> bool:
        """Whether every stored image's header is to be read again (after a schema upgrade)."""
        with Session(self._engine) as session:
            return bool(get_setting(session, HEADERS_OUTDATED, False))

    def headers_read(self) -> None:
        with self._write() as session:
            session.execute(delete(Setting).where(Setting.key == HEADERS_OUTDATED))

    def paths_without(self, kind: str, paths: Iterable[str]) -> list[str]:
        """Those of ``paths`` (stored images) that have no ``kind`` words yet, in their order.
        One statement for the whole library (every index run asks, and nearly always nothing
        is missing)."""
        have = select(ImageText.image_id).where(ImageText.kind == kind)
        stmt = select(ImageRow.path).where(ImageRow.id.not_in(have))
        with Session(self._engine) as session:
            missing = set(session.execute(stmt).scalars())
        return [p for p in paths if p in missing]

    def texts_of(self, image_id: int) -> list[Words]:
        """The words the library keeps for an image, each kind with its text (and, for OCR,
        each line's box)."""
        stmt = select(ImageText.kind, ImageText.text, ImageText.regions).where(
            ImageText.image_id == image_id
        )
        with Session(self._engine) as session:
            rows = session.execute(stmt.order_by(ImageText.id)).all()
        return [
            Words(kind, text, tuple(tuple(b) for b in regions) if regions is not None else None)
            for kind, text, regions in rows
        ]

    def places(self) -> list[PlaceCount]:
        """Where the images were taken (see :func:`count_places`)."""
        with Session(self._engine) as session:
            return count_places(session)

    def indexed_roots(self) -> list[str]:
        with Session(self._engine) as session:
            return list(get_setting(session, "indexed_roots", []))

    # -- what the indexer writes ---------------------------------------------------------------

    def add_indexed_roots(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        """Remember the folders and files indexing was asked to cover (``mmsearch serve`` only
        serves files that really lie under one of them)."""
        with self._write() as session:
            roots = set(get_setting(session, "indexed_roots", []))
            roots.update(os.path.abspath(p) for p in paths)
            set_setting(session, "indexed_roots", sorted(roots))

    def put_images(self, records: Sequence[ImageRecord], vectors: np.ndarray) -> list[int]:
        """Insert or update images (matched by path) with their vectors, in one transaction."""
        vectors = as_vectors(vectors, len(records))
        now = time.time()
        places = place_columns(records)  # before the transaction: it may load the geocoder
        with self._write() as session:
            self._model.admit(session, vectors)
            paths = [r.path for r in records]
            existing = self._ids_by_path(session, paths)
            # Core statements, many rows each: the ORM's unit of work built an object per row
            # and, wanting each new id back, inserted rows one at a time on SQLite.
            values = [
                _columns(record, vector, place, now)
                for record, vector, place in zip(records, vectors, places, strict=True)
            ]
            updated = [{"id": existing[v["path"]], **v} for v in values if v["path"] in existing]
            added = [v for v in values if v["path"] not in existing]
            if updated:
                session.execute(update(ImageRow), updated)  # by primary key, executemany
            if added:
                session.execute(insert(ImageRow.__table__), added)
            for chunk in chunked(paths):
                session.execute(delete(SkippedFile).where(SkippedFile.path.in_(chunk)))
            stored = {**existing, **self._ids_by_path(session, [v["path"] for v in added])}
            ids = np.array([stored[path] for path in paths], dtype=np.int64)
            self._indexes.write_in(session, "images", ids, vectors)
            replace_words(session, ids.tolist(), records)
            replace_place_words(session, list(zip(ids.tolist(), places, strict=True)))
            # Only updated rows have an old vector to drop (a removal scans the whole index).
            replaced = np.array(list(existing.values()), dtype=np.int64)
            moments = replace_moments(session, replaced.tolist(), ids.tolist(), records)
            generation = bump_generation(session, "images")
        self._indexes.apply("images", generation, remove=replaced, add=(ids, vectors))
        self._moments_changed(*moments)
        return ids.tolist()

    @staticmethod
    def _ids_by_path(session: Session, paths: Sequence[str]) -> dict[str, int]:
        found = {}
        for chunk in chunked(paths):
            stmt = select(ImageRow.path, ImageRow.id).where(ImageRow.path.in_(chunk))
            found.update(session.execute(stmt).all())
        return found

    def remove_images(self, paths: Iterable[str]) -> int:
        """Forget images by path (files that are gone); returns how many were removed."""
        paths = list(paths)
        if not paths:
            return 0
        with self._write() as session:
            found = list(self._ids_by_path(session, paths).values())
            moments = drop_moments(session, found)
            for chunk in chunked(paths):
                session.execute(delete(ImageRow).where(ImageRow.path.in_(chunk)))
                session.execute(delete(SkippedFile).where(SkippedFile.path.in_(chunk)))
            ids = np.array(found, dtype=np.int64)
            generation = bump_generation(session, "images")
        self._indexes.apply("images", generation, remove=ids)
        self._moments_changed(*moments)
        return len(ids)

    def forget(self, paths: Iterable[str | os.PathLike[str]]) -> int:
        """Remove the images at or below ``paths`` (folders or files, which need not exist any
        more) from the library, with their skip records; indexing stops covering those paths.
        The files themselves are not touched. Returns how many images were removed."""
        under = [os.path.abspath(p) for p in paths]
        removed = self.remove_images(list(self.image_state(under=under)))
        self.forget_skipped(p for p in self.skipped_state() if is_at_or_under(p, under))
        with self._write() as session:
            roots = get_setting(session, "indexed_roots", [])
            kept = [r for r in roots if not is_at_or_under(r, under)]
            set_setting(session, "indexed_roots", kept)
        return removed

    def record_skipped(self, path: str, *, reason: str, message: str, size: int, mtime_ns: int):
        """Remember that a file could not be indexed (and drop any stale entry for it)."""
        with self._write() as session:
            ids = session.execute(select(ImageRow.id).where(ImageRow.path == path)).scalars().all()
            moments = drop_moments(session, ids)
            if ids:
                session.execute(delete(ImageRow).where(ImageRow.id.in_(ids)))
                generation = bump_generation(session, "images")
            session.merge(
                SkippedFile(path=path, reason=reason, message=message, size=size, mtime_ns=mtime_ns)
            )
        if ids:
            self._indexes.apply("images", generation, remove=np.array(ids, dtype=np.int64))
        self._moments_changed(*moments)

    def forget_skipped(self, paths: Iterable[str]) -> None:
        with self._write() as session:
            for chunk in chunked(list(paths)):
                session.execute(delete(SkippedFile).where(SkippedFile.path.in_(chunk)))

    # -- what searches read --------------------------------------------------------------------

    def count(self) -> int:
        with Session(self._engine) as session:
            return session.execute(select(func.count()).select_from(ImageRow)).scalar_one()

    def skipped_count(self) -> int:
        with Session(self._engine) as session:
            return session.execute(select(func.count()).select_from(SkippedFile)).scalar_one()

    def hits(self, found: Sequence[tuple[int, float]]) -> list[ImageHit]:
        """(id, score) pairs as hits, in their order; ids no longer stored are left out."""
        # Only the columns a hit shows: loading whole rows (their 2 KB vectors, ORM objects)
        # cost more than the vector search itself.
        shown = (ImageRow.path, ImageRow.width, ImageRow.height, ImageRow.format, ImageRow.lens,
                 ImageRow.taken_at, ImageRow.taken_from, ImageRow.rating,
                 ImageRow.duration_s)  # fmt: skip
        described = (ImageRow.camera_make, ImageRow.camera_model, ImageRow.place_city,
                     ImageRow.place_region, ImageRow.place_country, ImageRow.latitude,
                     ImageRow.longitude)  # fmt: skip
        stmt = select(ImageRow.id, *shown, *described).where(ImageRow.id.in_([i for i, _ in found]))
        with Session(self._engine) as session:
            rows = {row.id: row for row in session.execute(stmt)}
        return [_hit(rows[i], s) for i, s in found if i in rows]

    def ids_where(self, conditions: Sequence) -> list[int]:
        """Ids of the images that meet SQLAlchemy ``conditions`` on ImageRow."""
        with Session(self._engine) as session:
            return list(session.execute(select(ImageRow.id).where(*conditions)).scalars())

    def paths(self) -> dict[int, str]:
        """id → path of every image."""
        with Session(self._engine) as session:
            return dict(session.execute(select(ImageRow.id, ImageRow.path)).all())

    def paths_of(self, ids: Sequence[int]) -> list[str]:
        with Session(self._engine) as session:
            return [
                path
                for chunk in chunked(list(ids))
                for path in session.execute(select(ImageRow.path).where(ImageRow.id.in_(chunk)))
                .scalars()
                .all()
            ]

    def image_vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """Stored vectors of images by id."""
        found = {}
        with Session(self._engine) as session:
            for chunk in chunked(list(ids)):
                stmt = select(ImageRow.id, ImageRow.embedding).where(ImageRow.id.in_(chunk))
                found.update((i, np.frombuffer(b, np.float32)) for i, b in session.execute(stmt))
        return found

    def sample(self, count: int) -> list[tuple[str, np.ndarray, float | None]]:
        """(path, vector, a video's poster time) of up to ``count`` images, evenly sampled by
        id."""
        with Session(self._engine) as session:
            ids = session.execute(select(ImageRow.id).order_by(ImageRow.id)).scalars().all()
            picks = np.linspace(0, len(ids) - 1, num=min(count, len(ids)))
            chosen = [ids[i] for i in np.unique(picks.round().astype(int))]
            stmt = select(ImageRow.path, ImageRow.embedding, ImageRow.poster_t)
            rows = session.execute(stmt.where(ImageRow.id.in_(chosen))).all()
        return [(path, np.frombuffer(blob, np.float32), at) for path, blob, at in rows]

    def stored_image(self, path: str) -> StoredImage | None:
        """The image stored for this absolute path, if any."""
        stmt = select(ImageRow).where(ImageRow.path == path)
        with Session(self._engine) as session:
            row = session.execute(stmt).scalar_one_or_none()
            if row is None:
                return None
            vector = np.frombuffer(row.embedding, np.float32)
            return StoredImage(row.id, row.size, row.mtime_ns, row.content_hash, vector)

    def with_content(self, digest: str) -> tuple[np.ndarray | None, set[int]]:
        """The vector of a stored image with this content hash (None if none), and the ids of
        every image with it."""
        stmt = select(ImageRow.id, ImageRow.embedding).where(ImageRow.content_hash == digest)
        with Session(self._engine) as session:
            rows = session.execute(stmt).all()
        if not rows:
            return None, set()
        return np.frombuffer(rows[0].embedding, np.float32), {r.id for r in rows}

    def servable_paths(self, image_ids: Iterable[int]) -> dict[int, str | None]:
        """id → the image's file if it may be handed out, else None. A file may be handed out
        when it really lies (symlinks resolved) under a folder that was indexed and is unchanged
        since it was indexed; unknown ids are None too."""
        image_ids = list(image_ids)
        stmt = select(ImageRow.id, ImageRow.path, ImageRow.size, ImageRow.mtime_ns).where(
            ImageRow.id.in_(image_ids)
        )
        with Session(self._engine) as session:
            rows = {r.id: r for r in session.execute(stmt).all()}
        roots = [os.path.realpath(r) for r in self.indexed_roots()]
        found: dict[int, str | None] = dict.fromkeys(image_ids)
        for image_id, row in rows.items():
            real = os.path.realpath(row.path)
            if not is_at_or_under(real, roots):
                continue
            try:
                stat = os.stat(real)
            except OSError:
                continue
            if (stat.st_size, stat.st_mtime_ns) == (row.size, row.mtime_ns):
                found[image_id] = real
        return found


def _at_or_below(path: str):
    """Rows whose path is ``path`` or lies below it: the folder's prefix as a range of the path
    index (every string starting with "folder/" sorts from "folder/" up to "folder0")."""
    folder = as_folder(os.path.abspath(path))
    below = folder[:-1] + chr(ord(folder[-1]) + 1)
    return or_(ImageRow.path == folder[:-1], and_(ImageRow.path >= folder, ImageRow.path < below))


def _hit(row, score: float) -> ImageHit:
    make, model = row.camera_make, row.camera_model
    # Most makers repeat their name in the model ("Canon EOS R6"); Fujifilm and Sony do not.
    camera = model if not make or (model and model.lower().startswith(make.lower())) else (
        f"{make} {model}" if model else make)  # fmt: skip
    place = ", ".join(n for n in (row.place_city, row.place_region, row.place_country) if n)
    return ImageHit(
        id=row.id, path=row.path, score=score, width=row.width, height=row.height,
        format=row.format, taken_at=row.taken_at, taken_from=row.taken_from, camera=camera,
        lens=row.lens, place=place or None, rating=row.rating, duration_s=row.duration_s,
        position=(row.latitude, row.longitude) if row.latitude is not None else None,
    )  # fmt: skip


def _columns(record: ImageRecord, vector: np.ndarray, place: dict, now: float) -> dict:
    """An image row's column values, from its record, vector and place."""
    columns = {
        name: getattr(record, name)
        for name in (
            "path", "size", "mtime_ns", "width", "height", "format", "content_hash",
            "taken_at", "taken_from", "sidecar_mtime_ns", "inode", "duration_s", "poster_t",
            *SHOT_COLUMNS,
        )
    }  # fmt: skip
    return {**columns, **place, "indexed_at": now, "embedding": vector.tobytes()}


def _record(row: ImageRow, texts: tuple[Words, ...] = (), moments=()) -> ImageRecord:
    columns = {
        f.name: getattr(row, f.name)
        for f in dataclasses.fields(ImageRecord)
        if f.name not in ("texts", "moments")
    }
    return ImageRecord(**columns, texts=texts, moments=tuple(moments))


def as_vectors(vectors: np.ndarray, count: int) -> np.ndarray:
    """``count`` vectors as one contiguous float32 array (what a vector blob holds)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != count:
        raise ValueError(f"expected {count} vectors, got shape {vectors.shape}")
    return vectors
