"""A library: one database of images and texts embedded by one model, and its vector indexes.

Open one with :func:`mmsearch.open_library`. The database is the source of truth (metadata and
vectors); the per-modality FAISS indexes are caches, rebuilt whenever the generation they were
saved at differs from the database's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sqlalchemy import and_, delete, false, func, or_, select
from sqlalchemy.orm import Session

from mmsearch.encoders.base import Encoder, create_encoder
from mmsearch.encoders.languages import uncovered_script
from mmsearch.encoders.numpy_text_tower import NumpyTextTower
from mmsearch.encoders.registry import (
    DEFAULT_MODEL,
    OFFLINE_MODEL,
    PRESETS,
    ModelSpec,
    changed_tower,
    model_languages,
    resolve_model,
    weights_id,
)
from mmsearch.errors import (
    InputError,
    ModelMismatchError,
)
from mmsearch.imaging.pictures import KnownContent
from mmsearch.index.derived import MODALITIES, DerivedIndexes
from mmsearch.index.faiss_index import FaissIndex
from mmsearch.records import ImageRecord, TextRecord
from mmsearch.results import CollectionInfo, IndexFileInfo, LibraryInfo
from mmsearch.search.searcher import LibraryQueries, text_ids
from mmsearch.storage.engine import bump_generation, chunked, get_setting, set_setting
from mmsearch.storage.query_cache import QueryCache
from mmsearch.storage.schema import Collection, ImageRow, SkippedFile, TextRow
from mmsearch.storage.transaction import WriteTransaction
from mmsearch.storage.writer_lock import WriterLock


class Library(LibraryQueries):
    """A library of images and text collections in one embedding space. Use :func:`open_library`.

    Its queries (search, similar, captions, tag, ...) are in :class:`LibraryQueries`."""

    def __init__(self, library_dir: Path, engine, *, model=None, device=None, encoder=None):
        self.library_dir = library_dir
        self.engine = engine
        self._device = device
        self._writer_lock = WriterLock(library_dir)
        self._indexes = DerivedIndexes(engine, library_dir, self._writer_lock)
        self._numpy_tower: NumpyTextTower | None | bool = None  # False: looked, none there
        self._query_cache = QueryCache(engine)
        with Session(engine) as session:
            self._stored_model = get_setting(session, "model")
            # Libraries made before BLAKE3 have no setting: their rows hold BLAKE2b hashes.
            self.hash_algorithm = get_setting(session, "content_hash", "blake2b")
        if encoder is not None:
            self._spec = encoder.spec
            self._encoder = encoder
        else:
            self._spec = self._choose_model(model)
            self._encoder = None
        if self._stored_model and encoder is not None:
            self._check_identity(encoder.identity()["weights"], encoder.spec.name)

    # -- model ---------------------------------------------------------------------------------

    def _choose_model(self, model: str | None) -> ModelSpec:
        stored = self._stored_model
        if model is not None:
            spec = resolve_model(model)
            if stored:
                self._check_identity(weights_id(spec), model)
            return spec
        if stored:
            if stored["model"] in PRESETS:
                # By name, not by stored path: the bundled model's folder moves with the package.
                spec = PRESETS[stored["model"]]
                self._check_identity(weights_id(spec), stored["model"])
                return spec
            return ModelSpec(
                name=stored["model"],
                arch=stored["arch"],
                pretrained=stored.get("pretrained"),
                reparameterize=stored.get("reparameterize", False),
                kind=stored.get("kind", "open_clip"),
            )
        return PRESETS[DEFAULT_MODEL]

    def _check_identity(self, weights: str, requested: str) -> None:
        stored = self._stored_model
        if weights != stored["weights"]:
            changed = changed_tower(stored, weights) if requested == stored["model"] else None
            if changed:
                raise ModelMismatchError(
                    f"library {self.library_dir} was built with {changed}; its vectors would not "
                    "be comparable with the installed version's. Install the version it was built "
                    "with, or index into a new --library"
                )
            raise ModelMismatchError(
                f"library {self.library_dir} was built with model {stored['model']}; "
                f"{requested} is a different model and its vectors would not be comparable. "
                f"Omit --model (or pass --model {stored['model']}), or use another --library "
                "for the new model"
            )

    @property
    def model(self) -> ModelSpec:
        return self._spec

    def has_model_recorded(self) -> bool:
        """Whether any vectors were ever stored: the model is recorded with the first."""
        return self._stored_model is not None

    def query_language_warning(self, text: str) -> str | None:
        """A warning when ``text`` is in a script that this model's text tower never learnt
        (its scores would look as confident as any, and mean nothing), else None."""
        languages = model_languages(self._spec)
        script = uncovered_script(text, languages)
        if script is None:
            return None
        return (
            f"the query {text!r} is in {script} script, which model {self._spec.name} was not "
            f"trained to read (its languages: {', '.join(languages)}); its scores mean little. "
            f"{OFFLINE_MODEL} reads {', '.join(model_languages(PRESETS[OFFLINE_MODEL]))}"
        )

    @property
    def encoder(self) -> Encoder:
        """The encoder, loaded on first use."""
        if self._encoder is None:
            self._encoder = create_encoder(self._spec, device=self._device)
        return self._encoder

    def _record_model(self, session: Session) -> None:
        if self._stored_model is None:
            identity = self.encoder.identity()
            set_setting(session, "model", identity)
            self._stored_model = identity

    # -- writing images ------------------------------------------------------------------------

    def image_state(self, under: Sequence[str] | None = None) -> dict[str, StoredFile]:
        """path → what is stored of each image, optionally only those at or below the given
        absolute paths (folders or files)."""
        stmt = select(
            ImageRow.path, ImageRow.id, ImageRow.size, ImageRow.mtime_ns, ImageRow.content_hash
        )
        if under is not None:
            # Ranges of the path index: only the rows asked for are read, not the whole library.
            stmt = stmt.where(or_(false(), *(_at_or_below(p) for p in under)))
        with Session(self.engine) as session:
            rows = session.execute(stmt).all()
        return {path: StoredFile(*rest) for path, *rest in rows}

    def add_indexed_roots(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        """Remember the folders and files indexing was asked to cover (``mmsearch serve`` only
        serves files that really lie under one of them)."""
        with self._write() as session:
            roots = set(get_setting(session, "indexed_roots", []))
            roots.update(os.path.abspath(p) for p in paths)
            set_setting(session, "indexed_roots", sorted(roots))

    def indexed_roots(self) -> list[str]:
        with Session(self.engine) as session:
            return list(get_setting(session, "indexed_roots", []))

    def servable_paths(self, image_ids: Iterable[int]) -> dict[int, str | None]:
        """id → the image's file if it may be handed out, else None. A file may be handed out
        when it really lies (symlinks resolved) under a folder that was indexed and is unchanged
        since it was indexed; unknown ids are None too."""
        image_ids = list(image_ids)
        stmt = select(ImageRow.id, ImageRow.path, ImageRow.size, ImageRow.mtime_ns).where(
            ImageRow.id.in_(image_ids)
        )
        with Session(self.engine) as session:
            rows = {r.id: r for r in session.execute(stmt).all()}
        roots = [os.path.join(os.path.realpath(r), "") for r in self.indexed_roots()]
        found: dict[int, str | None] = dict.fromkeys(image_ids)
        for image_id, row in rows.items():
            real = os.path.realpath(row.path)
            if not any(real.startswith(r) or real == r[:-1] for r in roots):
                continue
            try:
                stat = os.stat(real)
            except OSError:
                continue
            if (stat.st_size, stat.st_mtime_ns) == (row.size, row.mtime_ns):
                found[image_id] = real
        return found

    def known_content(self) -> KnownContent:
        """The content hashes of every stored image, compactly (see KnownContent)."""
        stmt = select(ImageRow.content_hash).where(ImageRow.content_hash.is_not(None))
        with Session(self.engine) as session:
            rows = session.execute(stmt.execution_options(yield_per=10_000))
            return KnownContent(rows.scalars())

    def images_by_hash(self, hashes: Iterable[str]) -> dict[str, tuple[ImageRecord, np.ndarray]]:
        """content hash → (a stored image with that content, its vector), for those stored."""
        found = {}
        with Session(self.engine) as session:
            for chunk in chunked(sorted(set(hashes))):
                stmt = select(ImageRow).where(ImageRow.content_hash.in_(chunk))
                for row in session.execute(stmt).scalars():
                    vector = np.frombuffer(row.embedding, np.float32)
                    found[row.content_hash] = (_record(row), vector)
        return found

    def skipped_state(self) -> dict[str, tuple[int, int, str, str]]:
        """path → (size, mtime_ns, reason, message) of files recorded as not indexable."""
        with Session(self.engine) as session:
            rows = session.execute(select(SkippedFile)).scalars().all()
            return {r.path: (r.size, r.mtime_ns, r.reason, r.message) for r in rows}

    def put_images(self, records: Sequence[ImageRecord], vectors: np.ndarray) -> list[int]:
        """Insert or update images (matched by path) with their vectors, in one transaction."""
        vectors = _as_vectors(vectors, len(records))
        now = time.time()
        with self._write() as session:
            self._record_model(session)
            self._check_dim(vectors)
            paths = [r.path for r in records]
            existing = {}
            for chunk in chunked(paths):
                stmt = select(ImageRow.path, ImageRow).where(ImageRow.path.in_(chunk))
                existing.update(session.execute(stmt).all())
            rows = []
            for record, vector in zip(records, vectors, strict=True):
                row = existing.get(record.path) or ImageRow(path=record.path)
                row.size, row.mtime_ns = record.size, record.mtime_ns
                row.width, row.height, row.format = record.width, record.height, record.format
                row.content_hash = record.content_hash
                row.taken_at, row.taken_from = record.taken_at, record.taken_from
                row.indexed_at, row.embedding = now, vector.tobytes()
                session.add(row)
                rows.append(row)
            for chunk in chunked(paths):
                session.execute(delete(SkippedFile).where(SkippedFile.path.in_(chunk)))
            session.flush()
            ids = np.array([row.id for row in rows], dtype=np.int64)
            # Only updated rows have an old vector to drop (a removal scans the whole index).
            replaced = np.array([r.id for r in existing.values()], dtype=np.int64)
            generation = bump_generation(session, "images")
        self._indexes.apply("images", generation, remove=replaced, add=(ids, vectors))
        return ids.tolist()

    def remove_images(self, paths: Iterable[str]) -> int:
        """Forget images by path (files that are gone); returns how many were removed."""
        paths = list(paths)
        if not paths:
            return 0
        with self._write() as session:
            found = []
            for chunk in chunked(paths):
                where = ImageRow.path.in_(chunk)
                found += session.execute(select(ImageRow.id).where(where)).scalars().all()
                session.execute(delete(ImageRow).where(where))
                session.execute(delete(SkippedFile).where(SkippedFile.path.in_(chunk)))
            ids = np.array(found, dtype=np.int64)
            generation = bump_generation(session, "images")
        self._indexes.apply("images", generation, remove=ids)
        return len(ids)

    def forget(self, paths: Iterable[str | os.PathLike[str]]) -> int:
        """Remove the images at or below ``paths`` (folders or files, which need not exist any
        more) from the library, with their skip records; indexing stops covering those paths.
        The files themselves are not touched. Returns how many images were removed."""
        under = [os.path.abspath(p) for p in paths]
        removed = self.remove_images(list(self.image_state(under=under)))
        self.forget_skipped(p for p in self.skipped_state() if _within(p, under))
        with self._write() as session:
            roots = get_setting(session, "indexed_roots", [])
            set_setting(session, "indexed_roots", [r for r in roots if not _within(r, under)])
        return removed

    def record_skipped(self, path: str, *, reason: str, message: str, size: int, mtime_ns: int):
        """Remember that a file could not be indexed (and drop any stale entry for it)."""
        with self._write() as session:
            ids = session.execute(select(ImageRow.id).where(ImageRow.path == path)).scalars().all()
            if ids:
                session.execute(delete(ImageRow).where(ImageRow.id.in_(ids)))
                generation = bump_generation(session, "images")
            session.merge(
                SkippedFile(path=path, reason=reason, message=message, size=size, mtime_ns=mtime_ns)
            )
        if ids:
            self._indexes.apply("images", generation, remove=np.array(ids, dtype=np.int64))

    def forget_skipped(self, paths: Iterable[str]) -> None:
        with self._write() as session:
            for chunk in chunked(list(paths)):
                session.execute(delete(SkippedFile).where(SkippedFile.path.in_(chunk)))

    # -- text collections ----------------------------------------------------------------------

    def add_texts(
        self,
        collection: str,
        records: Sequence[TextRecord],
        *,
        replace: bool = False,
        source: str | None = None,
        progress=None,
    ) -> int:
        """Embed and store texts as a named collection; returns how many were stored.

        Raises:
            InputError: the collection exists and ``replace`` is False, or ``records`` is empty.
        """
        if not records:
            raise InputError(f"no texts to add to collection {collection!r}")
        with Session(self.engine) as session:
            exists = session.execute(
                select(Collection.id).where(Collection.name == collection)
            ).scalar_one_or_none()
        if exists is not None and not replace:
            raise InputError(
                f"collection {collection!r} already exists; pass --replace to replace it "
                "or --collection NAME to add another"
            )
        encoder = self.encoder
        vectors = []
        step = 256
        for start in range(0, len(records), step):
            chunk = records[start : start + step]
            vectors.append(encoder.encode_texts([r.text for r in chunk]))
            if progress is not None:
                progress(len(chunk))
        vectors = _as_vectors(np.concatenate(vectors), len(records))
        with self._write() as session:
            self._record_model(session)
            self._check_dim(vectors)
            removed = np.zeros(0, np.int64)
            old = session.execute(
                select(Collection).where(Collection.name == collection)
            ).scalar_one_or_none()
            if old is not None:
                removed = _drop_collection(session, old)
                session.flush()
            coll = Collection(name=collection, source=source, created_at=time.time())
            session.add(coll)
            rows = [
                TextRow(
                    collection=coll,
                    external_id=r.external_id,
                    text=r.text,
                    meta=r.meta,
                    embedding=v.tobytes(),
                )
                for r, v in zip(records, vectors, strict=True)
            ]
            session.add_all(rows)
            session.flush()
            ids = np.array([row.id for row in rows], dtype=np.int64)
            generation = bump_generation(session, "texts")
        self._indexes.apply("texts", generation, remove=removed, add=(ids, vectors))
        return len(rows)

    def collections(self) -> list[CollectionInfo]:
        stmt = (
            select(Collection.name, func.count(TextRow.id), Collection.source)
            .outerjoin(TextRow)
            .group_by(Collection.id)
            .order_by(Collection.name)
        )
        with Session(self.engine) as session:
            return [CollectionInfo(n, c, s) for n, c, s in session.execute(stmt).all()]

    def remove_collection(self, name: str) -> int:
        """Delete a collection and its texts; returns how many texts went."""
        with self._write() as session:
            ids = _drop_collection(session, self._collection(session, name))
            generation = bump_generation(session, "texts")
        self._indexes.apply("texts", generation, remove=ids)
        return len(ids)

    def _collection(self, session: Session, name: str) -> Collection:
        coll = session.execute(
            select(Collection).where(Collection.name == name)
        ).scalar_one_or_none()
        if coll is None:
            names = ", ".join(c.name for c in self.collections()) or "none yet"
            raise InputError(f"no text collection named {name!r} (collections: {names})")
        return coll

    def index_path(self, modality: str) -> Path:
        """Where the modality's vector index file lives."""
        return self._indexes.path(modality)

    def rebuild_index(self, modality: str) -> int:
        """Rebuild a modality's vector index (``images`` or ``texts``) from the database and save
        it; returns how many vectors it holds."""
        return len(self._indexes.rebuild(modality))

    def flush(self) -> None:
        """Save changed vector indexes (atomically) and new query embeddings."""
        self._indexes.flush()
        self._query_cache.save()

    def close(self) -> None:
        self.flush()
        self.engine.dispose()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers -------------------------------------------------------------------------------

    def writing(self) -> WriterLock:
        """``with library.writing():`` holds the library's writer lock across several writes
        (every write takes it anyway; this keeps another process out in between).

        Raises:
            LibraryBusyError: another process is writing to the library.
        """
        return self._writer_lock

    def _write(self) -> WriteTransaction:
        return WriteTransaction(self.engine, self.library_dir, self._writer_lock)

    def _check_dim(self, vectors: np.ndarray) -> None:
        expected = int(self._stored_model["dim"])
        if vectors.shape[1] != expected:
            raise ModelMismatchError(
                f"vectors of dimension {vectors.shape[1]} cannot join library "
                f"{self.library_dir}, whose model makes dimension {expected}"
            )

    # -- info ----------------------------------------------------------------------------------

    def info(self) -> LibraryInfo:
        """What the library holds and where."""
        with Session(self.engine) as session:
            images = session.execute(select(func.count()).select_from(ImageRow)).scalar_one()
            texts = session.execute(select(func.count()).select_from(TextRow)).scalar_one()
            skipped = session.execute(select(func.count()).select_from(SkippedFile)).scalar_one()
            generations = {m: int(get_setting(session, f"generation.{m}", 0)) for m in MODALITIES}
        files = []
        for modality in MODALITIES:
            path = self.index_path(modality)
            if path.exists():
                header = FaissIndex.read_header(path) or {}
                files.append(
                    IndexFileInfo(
                        modality=modality,
                        path=str(path),
                        bytes=path.stat().st_size,
                        vectors=int(header.get("count", 0)),
                        current=header.get("generation") == generations[modality],
                    )
                )
        url = self.engine.url
        db_path = (
            Path(url.database) if url.drivername.startswith("sqlite") and url.database else None
        )
        return LibraryInfo(
            library_dir=str(self.library_dir),
            database=url.render_as_string(hide_password=True),
            database_bytes=db_path.stat().st_size if db_path and db_path.exists() else None,
            model=self._stored_model,
            images=images,
            skipped_files=skipped,
            texts=texts,
            collections=self.collections(),
            index_files=files,
        )


class StoredFile(NamedTuple):
    id: int
    size: int
    mtime_ns: int
    content_hash: str | None


def _at_or_below(path: str):
    """Rows whose path is ``path`` or lies below it: the folder's prefix as a range of the path
    index (every string starting with "folder/" sorts from "folder/" up to "folder0")."""
    folder = os.path.join(os.path.abspath(path), "")
    below = folder[:-1] + chr(ord(folder[-1]) + 1)
    return or_(ImageRow.path == folder[:-1], and_(ImageRow.path >= folder, ImageRow.path < below))


def _within(path: str, folders: Sequence[str]) -> bool:
    """Whether ``path`` is one of the absolute ``folders`` (or files) or lies below one."""
    return any(path == f or path.startswith(os.path.join(f, "")) for f in folders)


def _record(row: ImageRow) -> ImageRecord:
    return ImageRecord(
        path=row.path,
        size=row.size,
        mtime_ns=row.mtime_ns,
        width=row.width,
        height=row.height,
        format=row.format,
        content_hash=row.content_hash,
        taken_at=row.taken_at,
        taken_from=row.taken_from,
    )


def _drop_collection(session: Session, collection: Collection) -> np.ndarray:
    """Delete a collection and its texts inside the caller's transaction; returns the text ids."""
    ids = text_ids(session, collection)
    session.execute(delete(TextRow).where(TextRow.collection_id == collection.id))
    session.delete(collection)
    return ids


def _as_vectors(vectors: np.ndarray, count: int) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != count:
        raise ValueError(f"expected {count} vectors, got shape {vectors.shape}")
    return vectors
