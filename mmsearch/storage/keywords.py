"""Keyword search: the images whose words (names, metadata, descriptions) contain a query's
terms, best first, with what matched.

On SQLite a term of three characters or more is looked up in the FTS5 trigram index
``image_words`` (substrings, any script; ranked by BM25); shorter terms (a two-character
Japanese word such as 京都) and other databases (PostgreSQL) use a substring scan of
``image_texts``, ranked by BM25 too: the term's occurrences in each text, its length and how
rare the term is.
Every term goes in as a quoted FTS5 string or a bound LIKE parameter, so no query text is ever
FTS or SQL syntax.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from mmsearch.storage.schema import ImageRow, ImageText

MAX_CANDIDATES = 1000  # per term: a keyword ranking deeper than this adds nothing to fusion
_SCANNED = 20_000  # texts a substring scan ranks per term, for its best MAX_CANDIDATES
_K1, _B = 1.2, 0.75  # BM25's constants, FTS5's defaults


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
            # The texts' count and mean length, for every substring-scanned term's BM25: one
            # pass over image_texts per search, not one per term.
            corpus = functools.cache(lambda: _corpus(session))
            per_term = {t: self._matches(session, t, corpus) for t in terms}
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

    def _matches(self, session: Session, term: str, corpus) -> dict[int, tuple[float, int]]:
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
            rows = self._substring_matches(session, term, corpus)
        found: dict[int, tuple[float, int]] = {}
        for image_id, rank, row_id in rows:
            if image_id not in found or rank < found[image_id][0]:
                found[image_id] = (float(rank), row_id)
        return found

    def _substring_matches(self, session: Session, term: str, corpus) -> list[tuple]:
        """(image id, BM25 rank, text row id) of the texts holding ``term``, best first: a
        substring scan, ranked as FTS5 ranks (Okapi BM25 with its constants, lower is better),
        counting the term's occurrences in each text and the text's length in characters;
        ``corpus()`` gives the texts' count and mean length."""
        term = term.lower()
        like = "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        rows = session.execute(
            select(ImageText.image_id, ImageText.id, ImageText.text)
            .where(func.lower(ImageText.text).like(like, escape="\\"))
            .limit(_SCANNED)
        ).all()
        if not rows:
            return []
        texts, average = corpus()
        holding = len(rows)  # the term's document frequency, as far as the scan went
        idf = math.log((texts - holding + 0.5) / (holding + 0.5) + 1)
        ranked = []
        for image_id, row_id, words in rows:
            tf = words.lower().count(term)
            norm = _K1 * (1 - _B + _B * len(words) / average)
            ranked.append((image_id, -idf * tf * (_K1 + 1) / (tf + norm), row_id))
        ranked.sort(key=lambda row: row[1])
        return ranked[:MAX_CANDIDATES]

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


def _corpus(session: Session) -> tuple[int, float]:
    """How many texts the images have, and their mean length in characters (BM25's N, avgdl)."""
    texts, average = session.execute(
        select(func.count(), func.avg(func.length(ImageText.text)))
    ).one()
    return texts, max(float(average or 1), 1.0)
