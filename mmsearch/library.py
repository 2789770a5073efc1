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

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy.orm import Session

from mmsearch.encoders.base import Encoder
from mmsearch.encoders.registry import ModelSpec
from mmsearch.errors import InputError
from mmsearch.index.derived import MODALITIES, DerivedIndexes
from mmsearch.index.faiss_index import FaissIndex
from mmsearch.library_model import LibraryModel
from mmsearch.records import TextRecord
from mmsearch.results import CollectionInfo, ImageHit, IndexFileInfo, LibraryInfo, TextHit
from mmsearch.search.duplicates import DuplicateGroup
from mmsearch.search.searcher import Searcher
from mmsearch.search.terms import ImageFilter, QueryTerm, Relevance
from mmsearch.search.text_queries import TextQueries
from mmsearch.storage.catalogue import ImageCatalogue
from mmsearch.storage.engine import get_setting
from mmsearch.storage.query_cache import QueryCache
from mmsearch.storage.texts import TextCollections
from mmsearch.storage.transaction import WriteTransaction
from mmsearch.storage.writer_lock import WriterLock

PictureOrPath = str | os.PathLike[str] | Image.Image


class Library:
    """A library of images and text collections in one embedding space. Use :func:`open_library`.

    Raises:
        ModelMismatchError: ``model`` (or ``encoder``) is not the model the library was built
            with.
    """

    def __init__(self, library_dir: Path, engine, *, model=None, device=None, encoder=None):
        self.library_dir = library_dir
        self.engine = engine
        self._writer_lock = WriterLock(library_dir)
        self._indexes = DerivedIndexes(engine, library_dir, self._writer_lock)
        self._query_cache = QueryCache(engine)
        self._model = LibraryModel(library_dir, engine, model=model, device=device, encoder=encoder)
        self.images = ImageCatalogue(engine, self.transaction, self._indexes, self._model)
        self.texts = TextCollections(engine, self.transaction, self._indexes, self._model)
        self._text_queries = TextQueries(library_dir, self._query_cache, self._model)
        self.searcher = Searcher(
            library_dir, self.images, self.texts, self._indexes, self._text_queries, self._model
        )

    # -- the model -----------------------------------------------------------------------------

    @property
    def model(self) -> ModelSpec:
        return self._model.spec

    @property
    def encoder(self) -> Encoder:
        """The encoder, loaded on first use."""
        return self._model.encoder

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

    # -- queries (see mmsearch.search.searcher) ------------------------------------------------

    def search_text(
        self,
        query: str,
        *,
        k: int = 10,
        where: ImageFilter | None = None,
        relevance: Relevance | None = None,
        exact: bool = False,
    ) -> list[ImageHit]:
        """Images that match a text query, best first."""
        return self.searcher.search_text(query, k=k, where=where, relevance=relevance, exact=exact)

    def similar(
        self,
        image: PictureOrPath,
        *,
        k: int = 10,
        where: ImageFilter | None = None,
        relevance: Relevance | None = None,
        exact: bool = False,
    ) -> list[ImageHit]:
        """Images that look like ``image`` (a file, in the library or not, or a PIL image); the
        query image itself is left out."""
        return self.searcher.similar(image, k=k, where=where, relevance=relevance, exact=exact)

    def search(
        self,
        terms: Sequence[QueryTerm],
        *,
        k: int = 10,
        where: ImageFilter | None = None,
        relevance: Relevance | None = None,
        exact: bool = False,
    ) -> list[ImageHit]:
        """Images that match a composed query (see :meth:`Searcher.search`)."""
        return self.searcher.search(terms, k=k, where=where, relevance=relevance, exact=exact)

    def captions(
        self,
        image: PictureOrPath,
        *,
        k: int = 5,
        collection: str | None = None,
        distinct: bool = True,
        exact: bool = False,
    ) -> list[TextHit]:
        """The texts nearest to an image (see :meth:`Searcher.captions`)."""
        return self.searcher.captions(
            image, k=k, collection=collection, distinct=distinct, exact=exact
        )

    def tag(
        self,
        images: Sequence[str | os.PathLike[str]],
        labels: Sequence[str],
        *,
        templates: Sequence[str] = ("a photo of a {}.",),
    ) -> list[dict[str, float]]:
        """Zero-shot classification (see :meth:`Searcher.tag`)."""
        return self.searcher.tag(images, labels, templates=templates)

    def duplicates(self, threshold: float = 0.95) -> list[DuplicateGroup]:
        """Groups of near-identical images (cosine similarity ≥ ``threshold``), largest first."""
        return self.searcher.duplicates(threshold)

    def map_points(self, max_images: int = 1000) -> list[tuple[float, float, str]]:
        """(x, y, path) of up to ``max_images`` images on a 2-D PCA map, x and y in [0, 1]."""
        return self.searcher.map_points(max_images)

    def image_vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """Stored vectors of images by id."""
        return self.images.image_vectors(ids)

    def servable_paths(self, image_ids: Iterable[int]) -> dict[int, str | None]:
        """id → the image's file if ``mmsearch serve`` may hand it out, else None."""
        return self.images.servable_paths(image_ids)

    # -- writing -------------------------------------------------------------------------------

    def forget(self, paths: Iterable[str | os.PathLike[str]]) -> int:
        """Remove the images at or below ``paths`` (folders or files, which need not exist any
        more) from the library, with their skip records; indexing stops covering those paths.
        The files themselves are not touched. Returns how many images were removed."""
        return self.images.forget(paths)

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

    def collections(self) -> list[CollectionInfo]:
        return self.texts.collections()

    def remove_collection(self, name: str) -> int:
        """Delete a collection and its texts; returns how many texts went."""
        return self.texts.remove(name)

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

    # -- info ----------------------------------------------------------------------------------

    def info(self) -> LibraryInfo:
        """What the library holds and where."""
        with Session(self.engine) as session:
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
            model=self._model.stored,
            images=self.images.count(),
            skipped_files=self.images.skipped_count(),
            texts=self.texts.count(),
            collections=self.collections(),
            index_files=files,
        )
