"""Which languages a model's text tower understands, and telling when a query is in another.

A text tower trained on English maps 山 or 海 somewhere, and the scores look as confident as any
(0.62 on an English CLIP); nothing in them says the model could not read the query. The
script a query is written in is a cheap, reliable sign: when no language the tower was trained
on writes it, the search warns. Latin script is not checked: too many languages share it.
"""

from __future__ import annotations

import re

# Scripts a query may be written in, and the languages (ISO 639-1) that write them.
_SCRIPTS = {
    "Hiragana/Katakana": (re.compile(r"[\u3040-\u30ff]"), {"ja"}),
    "Han": (re.compile(r"[\u4e00-\u9fff]"), {"ja", "zh"}),
    "Hangul": (re.compile(r"[\uac00-\ud7af]"), {"ko"}),
    "Cyrillic": (re.compile(r"[\u0400-\u04ff]"), {"ru"}),
    "Arabic": (re.compile(r"[\u0600-\u06ff]"), {"ar"}),
    "Thai": (re.compile(r"[\u0e00-\u0e7f]"), {"th"}),
    "Greek": (re.compile(r"[\u0370-\u03ff]"), {"el"}),
    "Hebrew": (re.compile(r"[\u0590-\u05ff]"), {"he"}),
    "Devanagari": (re.compile(r"[\u0900-\u097f]"), {"hi", "mr", "ne"}),
}


def uncovered_script(text: str, languages: tuple[str, ...]) -> str | None:
    """The name of a script in ``text`` that none of ``languages`` writes, else None.

    ``("multilingual",)`` covers every script."""
    if "multilingual" in languages:
        return None
    for name, (pattern, writers) in _SCRIPTS.items():
        if pattern.search(text) and not writers & set(languages):
            return name
    return None
