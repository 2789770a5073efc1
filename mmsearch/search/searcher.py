"""A library's queries: text → image, image → image, image → text, composed queries, zero-shot
tags, duplicates and the 2-D map.

:class:`LibraryQueries` is the half of :class:`mmsearch.library.Library` that reads; the other
half writes and owns the state these methods use: ``engine``, ``encoder``, ``library_dir``,
``hash_algorithm``, ``_indexes``, ``_query_cache``, ``_numpy_tower``, ``_stored_model``,
``_encoder`` and ``_collection``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mmsearch.encoders.numpy_text_tower import NumpyTextTower
from mmsearch.errors import EmptyLibraryError, ImageError, InputError
from mmsearch.imaging.pictures import content_hash, load_image
from mmsearch.imaging.preprocess import fit_to_model
from mmsearch.index.derived import ROWS
from mmsearch.results import ImageHit, TextHit
from mmsearch.search.duplicates import DuplicateGroup, duplicate_groups
from mmsearch.search.projection import pca_2d
from mmsearch.search.terms import (
    ImageFilter,
    QueryTerm,
    Relevance,
    by_date,
    collapse_near_duplicates,
    compose,
    cut_at_knee,
    cut_within,
)
from mmsearch.storage.engine import chunked
from mmsearch.storage.schema import Collection, ImageRow, TextRow

TEXT_TOWER_DIR = "text_tower"  # the exported text tower for torch-free queries


class LibraryQueries:
    """Searching a library (mixed into :class:`mmsearch.library.Library`)."""

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
        (large libraries, see :mod:`mmsearch.index.faiss_index`).

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
        :mod:`mmsearch.encoders.numpy_text_tower`) unless the library has it; returns whether it
        has it. `mmsearch index` calls this after each run; a model whose text tower numpy does
        not reproduce keeps torch."""
        stored = self._stored_model
        if not stored:
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
        scale = self.encoder.logit_scale
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
                allowed = text_ids(session, self._collection(session, collection))
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


def text_ids(session: Session, collection: Collection) -> np.ndarray:
    stmt = select(TextRow.id).where(TextRow.collection_id == collection.id)
    return np.array(session.execute(stmt).scalars().all(), dtype=np.int64)
