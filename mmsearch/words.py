"""Words as people type them: file and folder names split into words, and a keyword query split
into the terms it must or may contain.

Names are kept whole and split (``IMG_2041`` is found by ``IMG_2041`` and by ``2041``;
``sunsetOverBay`` by ``sunset``), because the keyword index matches substrings
(:mod:`mmsearch.storage.catalogue`: SQLite FTS5 with trigrams, which also reads Japanese and
Chinese, written without spaces).
"""

from __future__ import annotations

import os
import re

_SEPARATORS = re.compile(r"[\s_\-.+,;()\[\]{}]+")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")
_QUOTED = re.compile(r'"([^"]*)"')
# English function words of three letters or more: as substrings of names they match what the
# query is not about ("a harbour with boats" finding dog_drawn_with_pen.png), so only a quoted
# phrase keeps them.
STOP_WORDS = frozenset({
    "the", "and", "with", "for", "from", "that", "this", "these", "those", "are", "was", "were",
    "has", "have", "had", "into", "onto", "over", "under", "its", "our", "your", "their", "his",
    "her", "him", "she", "they", "them", "who", "whom", "what", "which", "where", "when", "how",
    "very", "can", "could", "not", "but", "about", "than", "then", "also", "there", "here",
    "some", "any", "all",
})  # fmt: skip


def name_words(path: str, folders: int = 2) -> str:
    """The file's name and its ``folders`` nearest folders, whole and split into words:
    ``/trips/kyoto-trip_2024/IMG_2041.JPG`` → ``kyoto-trip_2024 kyoto trip 2024 IMG_2041 IMG
    2041``."""
    parts = path.split(os.sep)
    names = [p for p in parts[-1 - folders : -1] if p] + [os.path.splitext(parts[-1])[0]]
    words = []
    for name in names:
        split = [w for piece in _SEPARATORS.split(name) for w in _CAMEL.split(piece) if w]
        words += [name, *split] if split != [name] else [name]
    return " ".join(words)


def query_terms(query: str) -> tuple[list[str], list[str]]:
    """(phrases that must occur: the ``"quoted"`` ones, words that may), lower-cased. Latin
    words of one or two letters (``a``, ``of``) and English function words (STOP_WORDS) are
    left out unless quoted: as substrings they match nearly everything."""
    required = [p.strip().lower() for p in _QUOTED.findall(query) if p.strip()]
    rest = _QUOTED.sub(" ", query)
    optional = []
    for word in rest.split():
        word = word.strip(".,;:!?()[]{}'\"").lower()
        if word and not (word.isascii() and len(word) <= 2) and word not in STOP_WORDS:
            optional.append(word)
    return required, list(dict.fromkeys(optional))
