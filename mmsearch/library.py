"""A library: one database of images and texts embedded by one model, and its vector indexes.

Open one with :func:`mmsearch.open_library`. The database is the source of truth (metadata and
vectors); the per-modality FAISS indexes are caches, rebuilt whenever the generation they were
saved at differs from the database's.

:class:`Library` is a facade over explicit parts, each built with only what it needs:

- ``images`` (:class:`~mmsearch.storage.catalogue.ImageCatalogue`): the image rows, skip records
  and indexed folders; what the indexer writes.
- ``texts`` (:class:`~mmsearch.storage.texts.TextCollections`): the text collections.
- ``searcher`` (:class:`~mmsearch.search.searcher.Searcher`): every query.
- the model (:class:`~mmsearch.library_model.LibraryModel`), the derived indexes
  (:class:`~mmsearch.index.derived.DerivedIndexes`), the query cache and the writer lock, which
  the parts share.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from mmsearch.encoders.base import Encoder
from mmsearch.encoders.registry import ModelSpec
from mmsearch.errors import InputError
from mmsearch.index.derived import MODALITIES, DerivedIndexes
from mmsearch.index.faiss_index import FaissIndex
from mmsearch.library_model import LibraryModel
from mmsearch.records import TextRecord, Words
from mmsearch.results import IndexFileInfo, LibraryInfo
from mmsearch.search.searcher import Searcher
from mmsearch.search.text_queries import TextQueries
from mmsearch.storage.catalogue import ImageCatalogue
from mmsearch.storage.engine import get_setting
from mmsearch.storage.keywords import KeywordIndex
from mmsearch.storage.query_cache import QueryCache
from mmsearch.storage.server_lock import ServerLock
from mmsearch.storage.texts import TextCollections
from mmsearch.storage.transaction import WriteTransaction
from mmsearch.storage.writer_lock import WriterLock


class _Delegate:
    """A method of one of the library's parts, offered on :class:`Library` itself:
    ``library.search(...)`` is ``library.searcher.search(...)``, and ``help(Library.search)``
    shows the part's signature and docstring (written once, where the work is done)."""

    def __init__(self, part: str, method: Callable):
        self._part, self._name = part, method.__name__
        self._method = method
        functools.update_wrapper(self, method)

    def __get__(self, library, owner=None) -> Callable:
        if library is None:
            return self._method
        return getattr(getattr(library, self._part), self._name)


class Library:
    """A library of images and text collections in one embedding space. Use :func:`open_library`.

    Raises:
        ModelMismatchError: ``model`` (or ``encoder``) is not the model the library was built
            with.
    """

    def __init__(
        self, library_dir: Path, engine, *, model=None, device=None, encoder=None, read_only=False
    ):
        self.library_dir = library_dir
        self.engine = engine
        self.read_only = read_only  # searches work; writes raise LibraryError (see WriterLock)
        server = ServerLock(engine) if engine.dialect.name == "postgresql" else None
        self._writer_lock = WriterLock(library_dir, read_only=read_only, server=server)
        self._indexes = DerivedIndexes(engine, library_dir, self._writer_lock)
        self._query_cache = QueryCache(engine)
        self._model = LibraryModel(library_dir, engine, model=model, device=device, encoder=encoder)
        self.images = ImageCatalogue(engine, self.transaction, self._indexes, self._model)
        self.texts = TextCollections(engine, self.transaction, self._indexes, self._model)
        self._text_queries = TextQueries(library_dir, self._query_cache, self._model)
        self.searcher = Searcher(
            library_dir,
            self.images,
            self.texts,
            self._indexes,
            self._text_queries,
            self._model,
            self._writer_lock,
            KeywordIndex(engine),
        )

    # -- the model -----------------------------------------------------------------------------

    @property
    def model(self) -> ModelSpec:
        return self._model.spec

    @property
    def encoder(self) -> Encoder:
        """The encoder, loaded on first use."""
        return self._model.encoder

    @property
    def duplicate_threshold(self) -> float:
        """The model's similarity for "the same picture": ``duplicates`` and ``--dedup``'s
        default (measured per bundled model; 0.95 where not measured)."""
        return self._model.duplicate_threshold

    def has_model_recorded(self) -> bool:
        """Whether any vectors were ever stored: the model is recorded with the first."""
        return self._model.stored is not None

    def query_language_warning(self, text: str) -> str | None:
        """A warning when ``text`` is in a script this model's text tower never learnt."""
        return self._model.language_warning(text)

    def prepare_text_queries(self) -> bool:
        """Export the text tower for torch-free text queries (see
        :mod:`mmsearch.search.text_queries`); returns whether the library has it."""
        return self._text_queries.prepare()

    # -- what the parts answer (signatures and docstrings: Searcher, ImageCatalogue, ...) -----

    search_text = _Delegate("searcher", Searcher.search_text)
    similar = _Delegate("searcher", Searcher.similar)
    search = _Delegate("searcher", Searcher.search)
    captions = _Delegate("searcher", Searcher.captions)
    tag = _Delegate("searcher", Searcher.tag)
    duplicates = _Delegate("searcher", Searcher.duplicates)
    map_points = _Delegate("searcher", Searcher.map_points)
    image_vectors = _Delegate("images", ImageCatalogue.image_vectors)
    servable_paths = _Delegate("images", ImageCatalogue.servable_paths)
    forget = _Delegate("images", ImageCatalogue.forget)
    places = _Delegate("images", ImageCatalogue.places)
    collections = _Delegate("texts", TextCollections.collections)
    remove_collection = _Delegate("texts", TextCollections.remove)

    def image_texts(self, image: str | os.PathLike[str]) -> list[Words]:
        """The words the library keeps for an image file it holds, by kind (Words).

        Raises:
            InputError: the library does not hold that file.
        """
        path = os.path.abspath(os.fspath(image))
        stored = self.images.stored_image(path)
        if stored is None:
            raise InputError(f"{image} is not in library {self.library_dir}; index it first")
        return self.images.texts_of(stored.id)

    # -- writing -------------------------------------------------------------------------------

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
        with self.writing():  # before encoding: a busy or read-only library says so at once
            self.texts.refuse_existing(collection, replace=replace)
            encoder = self.encoder
            vectors = []
            step = 256
            for start in range(0, len(records), step):
                chunk = records[start : start + step]
                vectors.append(encoder.encode_texts([r.text for r in chunk]))
                if progress is not None:
                    progress(len(chunk))
            return self.texts.put(collection, records, np.concatenate(vectors), source=source)

    def writing(self) -> WriterLock:
        """``with library.writing():`` holds the library's writer lock across several writes
        (every write takes it anyway; this keeps another process out in between).

        Raises:
            LibraryBusyError: another process is writing to the library.
        """
        return self._writer_lock

    def transaction(self) -> WriteTransaction:
        """``with library.transaction() as session:`` one write, committed on success, under
        the writer lock, with database failures said as :class:`LibraryError`."""
        return WriteTransaction(self.engine, self.library_dir, self._writer_lock)

    # -- the derived indexes -------------------------------------------------------------------

    def index_in_database(self, modality: str) -> bool:
        """Whether the database itself searches this modality's vectors (pgvector)."""
        return self._indexes.in_database(modality)

    def index_path(self, modality: str) -> Path:
        """Where the modality's vector index file lives."""
        return self._indexes.path(modality)

    def rebuild_index(self, modality: str) -> int:
        """Rebuild a modality's vector index (``images`` or ``texts``) from the database and save
        it; returns how many vectors it holds."""
        return len(self._indexes.rebuild(modality))

    def flush(self) -> None:
        """Save changed vector indexes (atomically) and new query embeddings."""
        if not self.read_only:
            self._indexes.flush()
            self._query_cache.save()

    def close(self) -> None:
        self.flush()
        self.engine.dispose()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- info ----------------------------------------------------------------------------------

    def model_identity(self) -> dict:
        """The identity of the library's model: the one its vectors were stored with, else the
        one it will store them with."""
        return self._model.stored or self._model.encoder.identity()

    def info(self) -> LibraryInfo:
        """What the library holds and where."""
        with Session(self.engine) as session:
            generations = {m: int(get_setting(session, f"generation.{m}", 0)) for m in MODALITIES}
        files = []
        for modality in MODALITIES:
            path = self.index_path(modality)
            if path.exists() and not self.index_in_database(modality):
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
        sqlite = url.drivername.startswith("sqlite") and url.database
        # A read-only library's URL is SQLite's "file:" URI (location.sqlite_url): show the file.
        db_path = Path(url.database.removeprefix("file:")) if sqlite else None
        videos, moments, seconds = self.images.video_totals()
        return LibraryInfo(
            library_dir=str(self.library_dir),
            database=f"sqlite:///{db_path}" if sqlite else url.render_as_string(hide_password=True),
            database_bytes=db_path.stat().st_size if db_path and db_path.exists() else None,
            model=self._model.stored,
            images=self.images.count(),
            skipped_files=self.images.skipped_count(),
            texts=self.texts.count(),
            videos=videos,
            moments=moments,
            video_hours=round(seconds / 3600, 3),
            collections=self.collections(),
            index_files=files,
            read_only=self.read_only,
            vector_store=self._indexes.vector_store,
            vector_index=self._indexes.database_index(),
        )
