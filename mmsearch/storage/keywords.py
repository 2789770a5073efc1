"""Keyword search: the images whose words (names, metadata, descriptions) contain a query's
terms, best first, with what matched.

On SQLite a term of three characters or more is looked up in the FTS5 trigram index
``image_words`` (substrings, any script; ranked by BM25); shorter terms (a two-character
Japanese word such as 京都) and other databases use a substring scan of ``image_texts``.
Every term goes in as a quoted FTS5 string or a bound LIKE parameter, so no query text is ever
FTS or SQL syntax.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from mmsearch.storage.schema import ImageRow, ImageText

MAX_CANDIDATES = 1000  # per term: a keyword ranking deeper than this adds nothing to fusion


@dataclass(frozen=True)
class KeywordHit:
    image_id: int
    score: float  # higher is better: terms matched, then BM25
    matched: dict[str, str]  # kind → the text that matched (its first matching one)


class KeywordIndex:
    """The keyword side of one library's search."""

    def __init__(self, engine):
        self._engine = engine
        self._fts = engine.dialect.name == "sqlite"

    def search(
        self,
        required: Sequence[str],
        optional: Sequence[str],
        *,
        conditions: Sequence = (),
        limit: int = 100,
    ) -> list[KeywordHit]:
        """Images holding every ``required`` phrase and at least one term in all (any
        ``optional`` term, or the required ones alone), meeting ``conditions`` on ImageRow."""
        terms = list(dict.fromkeys([*required, *optional]))
        if not terms:
            return []
        with Session(self._engine) as session:
            per_term = {t: self._matches(session, t) for t in terms}
            candidates = set().union(*(m.keys() for m in per_term.values()))
            for phrase in required:
                candidates &= per_term[phrase].keys()
            if conditions and candidates:
                allowed = select(ImageRow.id).where(ImageRow.id.in_(candidates), *conditions)
                candidates &= set(session.execute(allowed).scalars())
            scored = []
            for image_id in candidates:
                found = [per_term[t][image_id] for t in terms if image_id in per_term[t]]
                bm25 = sum(rank for rank, _ in found)
                scored.append((len(found), -bm25, image_id))
            scored.sort(reverse=True)
            best = scored[:limit]
            matched = self._matched(session, [i for *_, i in best], terms)
        return [
            KeywordHit(image_id, count + min(1.0, rank / 100), matched.get(image_id, {}))
            for count, rank, image_id in best
        ]

    def _matches(self, session: Session, term: str) -> dict[int, tuple[float, int]]:
        """image id → (BM25 rank, lower is better; text row id) of images whose words hold
        ``term``."""
        if self._fts and len(term) >= 3:
            phrase = '"' + term.replace('"', '""') + '"'
            rows = session.execute(
                text(
                    "SELECT t.image_id, bm25(image_words), t.id FROM image_words "
                    "JOIN image_texts t ON t.id = image_words.rowid "
                    "WHERE image_words MATCH :phrase ORDER BY bm25(image_words) LIMIT :limit"
                ),
                {"phrase": phrase, "limit": MAX_CANDIDATES},
            ).all()
        else:
            like = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = session.execute(
                select(ImageText.image_id, 0.0, ImageText.id)
                .where(func.lower(ImageText.text).like(like, escape="\\"))
                .limit(MAX_CANDIDATES)
            ).all()
        found: dict[int, tuple[float, int]] = {}
        for image_id, rank, row_id in rows:
            if image_id not in found or rank < found[image_id][0]:
                found[image_id] = (float(rank), row_id)
        return found

    def _matched(self, session, ids: list[int], terms: list[str]) -> dict[int, dict[str, str]]:
        """Per image, kind → its text that holds a term (the snippet a hit shows)."""
        rows = session.execute(
            select(ImageText.image_id, ImageText.kind, ImageText.text).where(
                ImageText.image_id.in_(ids)
            )
        ).all()
        matched: dict[int, dict[str, str]] = {}
        for image_id, kind, words in rows:
            lowered = words.lower()
            if any(t in lowered for t in terms):
                matched.setdefault(image_id, {}).setdefault(kind, words[:300])
        return matched
