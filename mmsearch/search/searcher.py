"""Answering a library's queries: text → image, image → image, image → text, composed queries,
zero-shot tags, duplicates and the 2-D map.

The searcher holds no state of its own: it reads rows from the library's image catalogue and text
collections, vectors from the derived indexes, and encodes through the library's model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mmsearch.errors import EmptyLibraryError, ImageError, InputError
from mmsearch.imaging.fingerprint import content_hash
from mmsearch.imaging.pictures import load_image
from mmsearch.imaging.preprocess import fit_to_model
from mmsearch.imaging.video import frame_at, is_video_path, poster_index, sample_video
from mmsearch.index.derived import DerivedIndexes
from mmsearch.library_model import LibraryModel
from mmsearch.results import MAX_RESULTS, ImageHit, TextHit
from mmsearch.search import fusion
from mmsearch.search.duplicates import DuplicateGroup, duplicate_groups
from mmsearch.search.fusion import MODES
from mmsearch.search.moments import video_duplicates, videos_by_moments, with_moments
from mmsearch.search.projection import pca_2d
from mmsearch.search.selection import Selection
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
from mmsearch.search.text_queries import TextQueries
from mmsearch.storage.catalogue import ImageCatalogue
from mmsearch.storage.keywords import KeywordIndex
from mmsearch.storage.texts import TextCollections
from mmsearch.storage.writer_lock import WriterLock
from mmsearch.timecodes import split_moment
from mmsearch.words import query_terms


@dataclass(frozen=True)
class Searcher:
    """The queries of one library (see the module docstring), over the parts it reads."""

    library_dir: Path
    images: ImageCatalogue
    texts: TextCollections
    indexes: DerivedIndexes
    text_queries: TextQueries
    model: LibraryModel
    writer_lock: WriterLock
    keywords: KeywordIndex

    def search_text(
        self,
        query: str,
        *,
        k: int = 10,
        where: ImageFilter | None = None,
        relevance: Relevance | None = None,
        exact: bool = False,
        mode: str = "semantic",
    ) -> list[ImageHit]:
        """Images that match a text query, best first."""
        if not query.strip():
            raise InputError("the query is empty; say what to look for, e.g. 'a red bicycle'")
        terms = [QueryTerm(1.0, text=query)]
        return self.search(terms, k=k, where=where, relevance=relevance, exact=exact, mode=mode)

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
        mode: str = "semantic",
    ) -> list[ImageHit]:
        """Images that match a composed query: the weighted sum of its terms' embeddings.

        Query images that are in the library are left out of the results. ``where`` filters
        inside the vector search; ``relevance`` trims (margin, knee, near-duplicates) and orders.
        ``exact`` compares the query with every image even where the index is approximate
        (large libraries, see :mod:`mmsearch.index.faiss_index`).

        ``mode``: ``semantic``, the embeddings alone (the default here, so that a Python
        caller's results stay what they were; the command line and the web app default to
        hybrid, as measured); ``keyword``, the words stored with the images (names, metadata,
        descriptions); ``hybrid``, both rankings fused (:mod:`mmsearch.search.fusion`).

        Raises:
            InputError: no terms, terms that cancel out, a filter that matches no image, or an
                unknown mode.
        """
        if not terms:
            raise InputError("nothing to search for; give a text or an image")
        if mode not in MODES:
            raise InputError(f"search mode {mode!r}: use {', '.join(MODES)}")
        _check_k(k)
        self._require("images")
        relevance = relevance or Relevance()
        text_vectors = iter(
            self.text_queries.vectors([t.text for t in terms if t.text is not None])
        )
        vectors, exclude = [], set()
        for term in terms:
            if term.text is not None:
                vectors.append(next(text_vectors))
            else:
                vector, same = self._image_vector(term.image)
                vectors.append(vector)
                exclude |= same
        query = compose(vectors, [t.weight for t in terms])
        selection = Selection(self.images, where, exclude) if where else None
        if mode != "semantic":
            hits = self._fused(query, terms, k, mode, where, relevance, exclude, selection, exact)
            return by_date(hits) if relevance.sort == "date" else hits
        if relevance.dedup:
            hits = self._distinct_hits(query, k, relevance.dedup, exclude, selection, exact)
        else:
            hits = self.image_hits(query, k, exclude=exclude, selection=selection, exact=exact)
        if relevance.within is not None:
            hits = cut_within(hits, relevance.within)
        if relevance.knee:
            hits = cut_at_knee(hits)
        return by_date(hits) if relevance.sort == "date" else hits

    def _fused(self, query, terms, k, mode, where, relevance, exclude, selection, exact):
        """The keyword ranking (words of the positive text terms; images holding a negative
        term's words left out), fused with the semantic one in hybrid mode. ``within`` and
        ``knee`` trim the semantic ranking before fusion (they read cosine scores); scores shown
        are cosine similarities to the query."""
        fetch = max(4 * k, 40)
        positive = " ".join(t.text for t in terms if t.text is not None and t.weight > 0)
        required, optional = query_terms(positive)
        conditions = where.conditions() if where else ()
        keyword = [
            hit
            for hit in self.keywords.search(required, optional, conditions=conditions, limit=fetch)
            if hit.image_id not in exclude
        ]
        banned = set()
        for term in terms:
            if term.text is not None and term.weight < 0:
                words = [w for part in query_terms(term.text) for w in part]
                banned |= {h.image_id for h in self.keywords.search([], words, limit=10**9)}
        semantic = []
        if mode == "hybrid":
            semantic = self.image_hits(
                query, fetch, exclude=exclude, selection=selection, exact=exact
            )
            if relevance.within is not None:
                semantic = cut_within(semantic, relevance.within)
            if relevance.knee:
                semantic = cut_at_knee(semantic)
        rankings = [[h.id for h in semantic], [h.image_id for h in keyword]]
        ranked = fusion.reciprocal_rank_fusion(rankings, fusion.RRF_CONSTANT)
        ranked = [i for i in ranked if i not in banned]
        vectors = self.images.image_vectors(ranked)
        hits = self.images.hits([(i, float(vectors[i] @ query)) for i in ranked if i in vectors])
        why = {h.image_id: dict(h.matched) for h in keyword}
        for rank, hit in enumerate(semantic, 1):
            why.setdefault(hit.id, {})["semantic"] = rank
        hits = [dataclasses.replace(h, matched=tuple(why.get(h.id, {}).items())) for h in hits]
        hits = with_moments(self.images, hits, query)
        if relevance.dedup:
            hits = collapse_near_duplicates(hits, vectors, relevance.dedup)
        return hits[:k]

    def _distinct_hits(self, query, k, threshold, exclude, selection, exact) -> list[ImageHit]:
        """``k`` hits after folding near-duplicates, fetching more until there are ``k`` or the
        library has no more (a burst of 30 near-identical frames folds into one)."""
        fetch, available = k * 4, self.images.count()
        while True:
            hits = self.image_hits(query, fetch, exclude=exclude, selection=selection, exact=exact)
            stored = self.images.image_vectors([h.id for h in hits])
            folded = collapse_near_duplicates(hits, stored, threshold)
            # Fewer hits than asked for: every image that passes the filter is among them.
            if len(folded) >= k or fetch >= available or (selection and len(hits) < fetch):
                return folded[:k]
            fetch *= 4

    def duplicates(self, threshold: float | None = None) -> list[DuplicateGroup]:
        """Groups of near-identical images (cosine similarity ≥ ``threshold``, default the
        model's :attr:`~mmsearch.library_model.LibraryModel.duplicate_threshold`), largest
        first."""
        if threshold is None:
            threshold = self.model.duplicate_threshold
        if not 0 < threshold <= 1:
            raise InputError("the threshold is a cosine similarity in (0, 1]")
        self._require("images")
        index = self.indexes.get("images")
        ids, vectors = index.items()
        pictures = ~np.isin(ids, self.images.video_ids())  # videos: by their moments, below
        groups = duplicate_groups(ids[pictures], vectors[pictures], index, threshold)
        groups += video_duplicates(self.images, self.indexes, threshold)
        paths = self.images.paths()
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
        encoded = self.model.encoder.encode_texts(prompts).reshape(len(labels), len(templates), -1)
        label_vectors = encoded.mean(axis=1)
        label_vectors /= np.linalg.norm(label_vectors, axis=1, keepdims=True)
        scale = self.model.encoder.logit_scale
        results = []
        for image in images:
            vector, _ = self._image_vector(image)
            logits = scale * (label_vectors @ vector)
            probabilities = np.exp(logits - logits.max())
            probabilities /= probabilities.sum()
            order = np.argsort(-probabilities)
            results.append({labels[i]: float(probabilities[i]) for i in order})
        return results

    def map_points(self, max_images: int = 1000) -> list[tuple[float, float, str, float | None]]:
        """(x, y, path, t) of up to ``max_images`` images (evenly sampled by id) placed by a
        2-D PCA of their embeddings, x and y in [0, 1]; ``t`` is a video's poster time (the
        frame that stands for it), None for a picture."""
        self._require("images")
        sample = self.images.sample(max_images)
        positions = pca_2d(np.stack([vector for _, vector, _ in sample]))
        return [
            (float(x), float(y), path, at)
            for (path, _, at), (x, y) in zip(sample, positions, strict=True)
        ]

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
        _check_k(k)
        self._require("texts")
        allowed = self.texts.ids(collection) if collection is not None else None
        vector, _ = self._image_vector(image)
        index = self.indexes.get("texts")
        fetch = k * 8 if distinct else k
        while True:
            scores, ids = index.search(vector, fetch, allowed=allowed, exact=exact)
            found = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
            hits = self.texts.hits(found)
            if distinct:
                best: dict[str, TextHit] = {}
                for hit in hits:
                    best.setdefault(hit.text, hit)
                hits = list(best.values())
            if len(hits) >= k or fetch >= len(index):
                return hits[:k]
            fetch *= 8

    def image_hits(
        self, vector: np.ndarray, k: int, *, exclude=frozenset(), selection=None, exact=False
    ) -> list[ImageHit]:
        """The ``k`` images and videos nearest to ``vector`` (a video by its best moment),
        leaving out the ids in ``exclude``; only those of ``selection`` (a
        :class:`~mmsearch.search.selection.Selection`, which already leaves out ``exclude``)
        when given.

        Raises:
            InputError: no image is in ``selection``.
        """
        fetch = k if selection is not None else k + len(exclude)
        index = self.indexes.get("images")
        restriction = selection.restriction(index) if selection is not None else {}
        scores, ids = index.search(vector, fetch, exact=exact, **restriction)
        found = {
            int(i): float(s)
            for i, s in zip(ids[0], scores[0], strict=True)
            if i >= 0 and int(i) not in exclude
        }
        if selection is not None and not found:
            selection.ids()  # says that no image meets the filter, where none does
        by_moments = videos_by_moments(self.images, self.indexes, vector, fetch, selection, exact)
        for video, score in by_moments.items():
            if video not in exclude:
                found[video] = max(found.get(video, score), score)
        ranked = sorted(found.items(), key=lambda pair: -pair[1])[:k]
        hits = with_moments(self.images, self.images.hits(ranked), vector)
        return sorted(hits, key=lambda hit: -hit.score)

    def _image_vector(self, image) -> tuple[np.ndarray, set[int]]:
        """A query image's vector, and the ids of library images with the same content (the
        query itself, its copies), which results leave out. The stored vector is used when the
        library holds the file or its content unchanged."""
        if isinstance(image, Image.Image):
            return self._encode_picture(image.convert("RGB")), set()
        spec = os.fspath(image)
        path, at = (spec, None) if os.path.exists(spec) else split_moment(spec)
        path = os.path.abspath(path)
        if is_video_path(path):
            return self._video_vector(path, at, image)
        stored = self.images.stored_image(path)
        if stored is not None and _unchanged(path, stored):
            same = {stored.id}
            if stored.content_hash is not None:
                same |= self.images.with_content(stored.content_hash)[1]
            return stored.vector, same
        try:
            digest = content_hash(path, self.images.hash_algorithm)
        except OSError:
            digest = None  # load_image below says what is wrong
        if digest:
            vector, twins = self.images.with_content(digest)
            if vector is not None:
                return vector, twins
            twin = self._unhashed_twin(path, digest)
            if twin is not None:
                return twin.vector, {twin.id}
        try:
            picture = load_image(path, min_size=self.model.encoder.preprocess.size)
        except ImageError as exc:
            raise InputError(f"cannot use {image} as a query image: {exc}") from exc
        return self._encode_picture(picture), set()

    def _video_vector(self, path: str, at: float | None, spec) -> tuple[np.ndarray, set[int]]:
        """A query video's vector: the moment shown at ``at`` seconds (the last moment at or
        before it: a moment stands for its scene), or its poster without a time. The stored
        moments are used when the library holds the video unchanged."""
        stored = self.images.stored_image(path)
        video, digest = None, None
        if stored is not None and _unchanged(path, stored):
            video, digest = stored.id, stored.content_hash
        else:  # a copy of a stored video? (sample_video below says what is wrong with a file)
            with contextlib.suppress(OSError):
                digest = content_hash(path, self.images.hash_algorithm)
        twins = self.images.with_content(digest)[1] if digest else set()
        if video is None and digest:
            twin = self._unhashed_twin(path, digest) if not twins else None
            video = min(twins) if twins else (twin.id if twin is not None else None)
        if video is not None:
            same = {video, *twins}
            if at is None:
                return self.images.image_vectors([video])[video], same
            times, vectors = self.images.moments_of([video])[video]
            return vectors[max(0, int(np.searchsorted(times, at + 1e-6)) - 1)], same
        size = self.model.encoder.preprocess.size
        try:
            if at is not None:
                return self._encode_picture(frame_at(path, at, size)), set()
            video = sample_video(path, size)
        except ImageError as exc:
            raise InputError(f"cannot use {spec} as a query: {exc}") from exc
        cfg = self.model.encoder.preprocess
        vectors = self.model.encoder.encode_images(
            np.stack([fit_to_model(m.image, cfg) for m in video.moments])
        )
        return vectors[poster_index(vectors)], set()

    def _unhashed_twin(self, path: str, digest: str):
        """A stored image with this content that was stored without a hash (no copy of it was
        possible then): its file, if unchanged, is hashed now to compare (not stored: a query
        never writes). Few files share a size, so this reads one file or none."""
        for twin_path in self.images.unhashed([os.path.getsize(path)]):
            try:
                if content_hash(twin_path, self.images.hash_algorithm) == digest:
                    return self.images.stored_image(twin_path)
            except OSError:
                continue
        return None

    def _encode_picture(self, picture: Image.Image) -> np.ndarray:
        pixels = fit_to_model(picture, self.model.encoder.preprocess)
        return self.model.encoder.encode_images(pixels[None])[0]

    def _require(self, modality: str) -> None:
        count = self.images.count() if modality == "images" else self.texts.count()
        if count:
            return
        writer = self.writer_lock.writer_elsewhere()
        if writer is not None:
            raise EmptyLibraryError(
                f"library {self.library_dir} has no {modality} yet: it is being written by "
                f"another mmsearch process (pid {writer}), and its first {modality} appear when "
                "that process stores its first batch; try again in a moment"
            )
        hint = (
            "index some images first: mmsearch index PATH"
            if modality == "images"
            else "add a text collection first: mmsearch add-texts FILE"
        )
        raise EmptyLibraryError(f"library {self.library_dir} has no {modality}; {hint}")


def _unchanged(path: str, stored) -> bool:
    """Whether the file is as it was stored (or gone: then the stored vector is all we have)."""
    try:
        stat = os.stat(path)
    except OSError:
        return True
    return (stat.st_size, stat.st_mtime_ns) == (stored.size, stored.mtime_ns)


def _check_k(k: int) -> None:
    if not 1 <= k <= MAX_RESULTS:
        raise InputError(f"-k {k}: ask for between 1 and {MAX_RESULTS} results")
