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
from PIL import Image
from sqlalchemy import and_, delete, false, func, or_, select
from sqlalchemy.orm import Session

from mmsearch.derived_indexes import MODALITIES, ROWS, DerivedIndexes
from mmsearch.duplicates import DuplicateGroup, duplicate_groups
from mmsearch.encoder import Encoder, OpenClipEncoder
from mmsearch.errors import (
    EmptyLibraryError,
    ImageError,
    InputError,
    ModelMismatchError,
)
from mmsearch.imaging import KnownContent, content_hash, load_image
from mmsearch.models import DEFAULT_MODEL, PRESETS, ModelSpec, resolve_model, weights_id
from mmsearch.numpy_text_tower import NumpyTextTower
from mmsearch.preprocess import fit_to_model
from mmsearch.projection import pca_2d
from mmsearch.query import (
    ImageFilter,
    QueryTerm,
    Relevance,
    by_date,
    collapse_near_duplicates,
    compose,
    cut_at_knee,
    cut_within,
)
from mmsearch.query_cache import QueryCache
from mmsearch.records import ImageRecord, TextRecord
from mmsearch.results import CollectionInfo, ImageHit, IndexFileInfo, LibraryInfo, TextHit
from mmsearch.schema import Collection, ImageRow, SkippedFile, TextRow
from mmsearch.store import bump_generation, chunked, get_setting, set_setting
from mmsearch.transaction import WriteTransaction
from mmsearch.vector_index import FaissIndex
from mmsearch.writer_lock import WriterLock

TEXT_TOWER_DIR = "text_tower"  # the exported text tower for torch-free queries


class Library:
    """A library of images and text collections in one embedding space. Use :func:`open_library`."""

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
            )
        return PRESETS[DEFAULT_MODEL]

    def _check_identity(self, weights: str, requested: str) -> None:
        stored = self._stored_model
        if weights != stored["weights"]:
            raise ModelMismatchError(
                f"library {self.library_dir} was built with model {stored['model']}; "
                f"{requested} is a different model and its vectors would not be comparable. "
                f"Omit --model (or pass --model {stored['model']}), or use another --library "
                "for the new model"
            )

    @property
    def model(self) -> ModelSpec:
        return self._spec

    @property
    def encoder(self) -> Encoder:
        """The encoder, loaded on first use."""
        if self._encoder is None:
            self._encoder = OpenClipEncoder(self._spec, device=self._device)
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

    # -- queries -------------------------------------------------------------------------------

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
        if not query.strip():
            raise InputError("the query is empty; say what to look for, e.g. 'a red bicycle'")
        terms = [QueryTerm(1.0, text=query)]
        return self.search(terms, k=k, where=where, relevance=relevance, exact=exact)

    def similar(
        self,
        image: str | os.PathLike[str] | Image.Image,
        *,
        k: int = 10,
        where: ImageFilter | None = None,
        relevance: Relevance | None = None,
        exact: bool = False,
    ) -> list[ImageHit]:
        """Images that look like ``image`` (a file, in the library or not, or a PIL image).

        The query image itself is left out of the results.
        """
        terms = [QueryTerm(1.0, image=image)]
        return self.search(terms, k=k, where=where, relevance=relevance, exact=exact)

    def search(
        self,
        terms: Sequence[QueryTerm],
        *,
        k: int = 10,
        where: ImageFilter | None = None,
        relevance: Relevance | None = None,
        exact: bool = False,
    ) -> list[ImageHit]:
        """Images that match a composed query: the weighted sum of its terms' embeddings.

        Query images that are in the library are left out of the results. ``where`` filters
        inside the vector search; ``relevance`` trims (margin, knee, near-duplicates) and orders.
        ``exact`` compares the query with every image even where the index is approximate
        (large libraries, see :mod:`mmsearch.vector_index`).

        Raises:
            InputError: no terms, terms that cancel out, or a filter that matches no image.
        """
        if not terms:
            raise InputError("nothing to search for; give a text or an image")
        self._require("images")
        relevance = relevance or Relevance()
        text_vectors = iter(self._query_vectors([t.text for t in terms if t.text is not None]))
        vectors, exclude = [], set()
        for term in terms:
            if term.text is not None:
                vectors.append(next(text_vectors))
            else:
                vector, same = self._image_vector(term.image)
                vectors.append(vector)
                exclude |= same
        query = compose(vectors, [t.weight for t in terms])
        allowed = self._allowed_images(where, exclude) if where else None
        fetch = k * 4 if relevance.dedup else k
        hits = self._image_hits(query, fetch, exclude=exclude, allowed=allowed, exact=exact)
        if relevance.dedup:
            stored = self.image_vectors([h.id for h in hits])
            hits = collapse_near_duplicates(hits, stored, relevance.dedup)
        hits = hits[:k]
        if relevance.within is not None:
            hits = cut_within(hits, relevance.within)
        if relevance.knee:
            hits = cut_at_knee(hits)
        return by_date(hits) if relevance.sort == "date" else hits

    def _query_vectors(self, texts: list[str]) -> list[np.ndarray]:
        """Embeddings of query texts: from the query cache, else encoded (and then cached)."""
        cached = self._query_cache.get(texts)
        missing = sorted({t for t in texts if t not in cached})
        if missing:
            encoded = dict(zip(missing, self._encode_queries(missing), strict=True))
            cached.update(encoded)
            self._query_cache.add(encoded)
        return [cached[t] for t in texts]

    def _encode_queries(self, texts: list[str]) -> np.ndarray:
        """Query texts → vectors: in numpy from the exported text tower while this library has
        not loaded its torch encoder (a one-shot CLI search needs no torch), else the encoder."""
        if self._encoder is None and self._stored_model:
            if self._numpy_tower is None:
                folder = self.library_dir / TEXT_TOWER_DIR
                self._numpy_tower = NumpyTextTower.open(folder, self._stored_model["weights"])
            if self._numpy_tower:
                return self._numpy_tower.encode(texts)
            self._numpy_tower = False  # none exported: do not look again
        return self.encoder.encode_texts(texts)

    def prepare_text_queries(self) -> bool:
        """Export the model's text tower for torch-free text queries (see
        :mod:`mmsearch.numpy_text_tower`) unless the library has it; returns whether it has it.
        `mmsearch index` calls this after each run; a model whose text tower numpy does not
        reproduce keeps torch."""
        stored = self._stored_model
        if not stored or not isinstance(self.encoder, OpenClipEncoder):
            return False
        folder = self.library_dir / TEXT_TOWER_DIR
        if NumpyTextTower.open(folder, stored["weights"]) is not None:
            return True
        try:
            return self.encoder.export_text_tower(folder, stored["weights"])
        except OSError:
            return False  # a read-only or full library still answers, with torch

    def _allowed_images(self, where: ImageFilter, exclude: set[int]) -> np.ndarray:
        stmt = select(ImageRow.id).where(*where.conditions())
        with Session(self.engine) as session:
            ids = [i for i in session.execute(stmt).scalars() if i not in exclude]
        if not ids:
            raise InputError(f"no image in the library matches the filters ({where.describe()})")
        return np.array(ids, dtype=np.int64)

    def duplicates(self, threshold: float = 0.95) -> list[DuplicateGroup]:
        """Groups of near-identical images (cosine similarity ≥ ``threshold``), largest first."""
        if not 0 < threshold <= 1:
            raise InputError("the threshold is a cosine similarity in (0, 1]")
        self._require("images")
        index = self._indexes.get("images")
        ids, vectors = index.items()
        groups = duplicate_groups(ids, vectors, index, threshold)
        with Session(self.engine) as session:
            paths = dict(session.execute(select(ImageRow.id, ImageRow.path)).all())
        return [
            DuplicateGroup(sorted(paths[i] for i in members if i in paths), round(score, 4))
            for members, score in groups
        ]

    def tag(
        self,
        images: Sequence[str | os.PathLike[str]],
        labels: Sequence[str],
        *,
        templates: Sequence[str] = ("a photo of a {}.",),
    ) -> list[dict[str, float]]:
        """Zero-shot classification: for each image, label → probability (CLIP's softmax over
        the labels at the model's learnt temperature), labels in order of probability.

        Each label is embedded through every template ("a photo of a {}.") and the unit vectors
        averaged, CLIP's prompt ensembling.
        """
        labels = [label.strip() for label in labels if label.strip()]
        if len(labels) < 2:
            raise InputError("give at least two labels to choose between, e.g. --labels cat,dog")
        if any("{}" not in t for t in templates):
            raise InputError('each --template needs a "{}" where the label goes')
        prompts = [t.format(label) for label in labels for t in templates]
        encoded = self.encoder.encode_texts(prompts).reshape(len(labels), len(templates), -1)
        label_vectors = encoded.mean(axis=1)
        label_vectors /= np.linalg.norm(label_vectors, axis=1, keepdims=True)
        scale = getattr(self.encoder, "logit_scale", 100.0)
        results = []
        for image in images:
            vector, _ = self._image_vector(image)
            logits = scale * (label_vectors @ vector)
            probabilities = np.exp(logits - logits.max())
            probabilities /= probabilities.sum()
            order = np.argsort(-probabilities)
            results.append({labels[i]: float(probabilities[i]) for i in order})
        return results

    def map_points(self, max_images: int = 1000) -> list[tuple[float, float, str]]:
        """(x, y, path) of up to ``max_images`` images (evenly sampled by id) placed by a 2-D
        PCA of their embeddings, x and y in [0, 1]."""
        self._require("images")
        with Session(self.engine) as session:
            ids = session.execute(select(ImageRow.id).order_by(ImageRow.id)).scalars().all()
            picks = np.linspace(0, len(ids) - 1, num=min(max_images, len(ids)))
            chosen = [ids[i] for i in np.unique(picks.round().astype(int))]
            rows = session.execute(
                select(ImageRow.path, ImageRow.embedding).where(ImageRow.id.in_(chosen))
            ).all()
        positions = pca_2d(np.stack([np.frombuffer(b, np.float32) for _, b in rows]))
        return [
            (float(x), float(y), path) for (path, _), (x, y) in zip(rows, positions, strict=True)
        ]

    def image_vectors(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """Stored vectors of images by id."""
        found = {}
        with Session(self.engine) as session:
            for chunk in chunked(list(ids)):
                stmt = select(ImageRow.id, ImageRow.embedding).where(ImageRow.id.in_(chunk))
                found.update((i, np.frombuffer(b, np.float32)) for i, b in session.execute(stmt))
        return found

    def captions(
        self,
        image: str | os.PathLike[str] | Image.Image,
        *,
        k: int = 5,
        collection: str | None = None,
        distinct: bool = True,
        exact: bool = False,
    ) -> list[TextHit]:
        """The texts nearest to an image, optionally from one collection only.

        With ``distinct`` (the default) a text that occurs many times (a caption shared by many
        images) is listed once, with its best-scoring occurrence. ``exact`` compares the image
        with every text even where the index is approximate.
        """
        self._require("texts")
        allowed = None
        if collection is not None:
            with Session(self.engine) as session:
                allowed = _text_ids(session, self._collection(session, collection))
        vector, _ = self._image_vector(image)
        index = self._indexes.get("texts")
        fetch = k * 8 if distinct else k
        while True:
            scores, ids = index.search(vector, fetch, allowed=allowed, exact=exact)
            found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
            hits = self._text_hits(found)
            if distinct:
                best: dict[str, TextHit] = {}
                for hit in hits:
                    best.setdefault(hit.text, hit)
                hits = list(best.values())
            if len(hits) >= k or fetch >= len(index):
                return hits[:k]
            fetch *= 8

    def _text_hits(self, found: list[tuple[int, float]]) -> list[TextHit]:
        with Session(self.engine) as session:
            rows = {
                row.id: row
                for row in session.execute(
                    select(TextRow).where(TextRow.id.in_([i for i, _ in found]))
                ).scalars()
            }
            names = dict(session.execute(select(Collection.id, Collection.name)).all())
        return [
            TextHit(
                id=i,
                text=rows[i].text,
                score=s,
                collection=names[rows[i].collection_id],
                external_id=rows[i].external_id,
                meta=rows[i].meta,
            )
            for i, s in found
            if i in rows
        ]

    def _image_hits(
        self, vector: np.ndarray, k: int, *, exclude=frozenset(), allowed=None, exact=False
    ) -> list[ImageHit]:
        fetch = k if allowed is not None else k + len(exclude)  # allowed already excludes
        index = self._indexes.get("images")
        scores, ids = index.search(vector, fetch, allowed=allowed, exact=exact)
        found = [
            (int(i), float(s))
            for i, s in zip(ids[0], scores[0], strict=True)
            if i >= 0 and int(i) not in exclude
        ][:k]
        # Only the columns a hit shows: loading whole rows (their 2 KB vectors, ORM objects)
        # cost more than the vector search itself.
        columns = (ImageRow.path, ImageRow.width, ImageRow.height, ImageRow.format)
        stmt = select(ImageRow.id, *columns, ImageRow.taken_at).where(
            ImageRow.id.in_([i for i, _ in found])
        )
        with Session(self.engine) as session:
            rows = {row.id: row for row in session.execute(stmt)}
        return [
            ImageHit(
                id=i,
                path=rows[i].path,
                score=s,
                width=rows[i].width,
                height=rows[i].height,
                format=rows[i].format,
                taken_at=rows[i].taken_at,
            )
            for i, s in found
            if i in rows
        ]

    def _image_vector(self, image) -> tuple[np.ndarray, set[int]]:
        """A query image's vector, and the ids of library images with the same content (the
        query itself, its copies), which results leave out. The stored vector is used when the
        library holds the file or its content unchanged."""
        if isinstance(image, Image.Image):
            return self._encode_picture(image.convert("RGB")), set()
        path = os.path.abspath(os.fspath(image))
        with Session(self.engine) as session:
            row = session.execute(
                select(ImageRow).where(ImageRow.path == path)
            ).scalar_one_or_none()
            if row is not None:
                try:
                    stat = os.stat(path)
                    unchanged = (stat.st_size, stat.st_mtime_ns) == (row.size, row.mtime_ns)
                except OSError:
                    unchanged = True  # the stored vector is all we have
                if unchanged:
                    return np.frombuffer(row.embedding, np.float32), self._same_content(row)
            try:
                digest = content_hash(path, self.hash_algorithm)
            except OSError:
                digest = None  # load_image below says what is wrong
            twins = (
                session.execute(select(ImageRow).where(ImageRow.content_hash == digest))
                .scalars()
                .all()
                if digest
                else []
            )
        if twins:
            return np.frombuffer(twins[0].embedding, np.float32), {t.id for t in twins}
        try:
            picture = load_image(path, min_size=self.encoder.preprocess.size)
        except ImageError as exc:
            raise InputError(f"cannot use {image} as a query image: {exc}") from exc
        return self._encode_picture(picture), set()

    def _same_content(self, row: ImageRow) -> set[int]:
        if row.content_hash is None:
            return {row.id}
        stmt = select(ImageRow.id).where(ImageRow.content_hash == row.content_hash)
        with Session(self.engine) as session:
            return set(session.execute(stmt).scalars()) | {row.id}

    def _encode_picture(self, picture: Image.Image) -> np.ndarray:
        pixels = fit_to_model(picture, self.encoder.preprocess)
        return self.encoder.encode_images(pixels[None])[0]

    def _require(self, modality: str) -> None:
        with Session(self.engine) as session:
            count = session.execute(select(func.count()).select_from(ROWS[modality])).scalar_one()
        if not count:
            hint = (
                "index some images first: mmsearch index PATH"
                if modality == "images"
                else "add a text collection first: mmsearch add-texts FILE"
            )
            raise EmptyLibraryError(f"library {self.library_dir} has no {modality}; {hint}")

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


def _text_ids(session: Session, collection: Collection) -> np.ndarray:
    stmt = select(TextRow.id).where(TextRow.collection_id == collection.id)
    return np.array(session.execute(stmt).scalars().all(), dtype=np.int64)


def _drop_collection(session: Session, collection: Collection) -> np.ndarray:
    """Delete a collection and its texts inside the caller's transaction; returns the text ids."""
    ids = _text_ids(session, collection)
    session.execute(delete(TextRow).where(TextRow.collection_id == collection.id))
    session.delete(collection)
    return ids


def _as_vectors(vectors: np.ndarray, count: int) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != count:
        raise ValueError(f"expected {count} vectors, got shape {vectors.shape}")
    return vectors
