"""A Japanese–English dictionary that glosses a Japanese query into English words.

The towers model's text tower (multilingual USE) puts most Japanese sentences beside their
English translations, but not the words it rarely saw: ルーペ (a magnifying glass), 金星 (Venus),
トランプ (playing cards), country names in katakana. Its heads, trained on English captions only,
widen that gap. Dictionary-based query translation, a classic of cross-language retrieval, closes
much of it at no training cost: the query is cut into the longest dictionary headwords it holds
(Japanese has no spaces), each replaced by its first English gloss, and the text tower's vector
of that gloss is added to the query's own (:meth:`TowersEncoder.text_features`). Words the
dictionary lacks (names, inflected verbs) are left out of the gloss; the query's own vector still
carries them.

The dictionary is a read-only SQLite table ``words(headword, gloss)`` built from JMdict and
JMnedict by ``scripts/build_lexicon_ja.py``: 426,000 headwords answer from disk, so opening it
costs a millisecond where reading them into a dict took 0.8 s, and it is opened on the first text
that holds kana or kanji.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from mmsearch.encoders.registry import model_file
from mmsearch.errors import ModelError

# Kana and CJK ideographs: a text without any is left as it is.
_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]")
# One kana alone is mostly a particle or a fragment of an unknown name: never a headword here.
_SINGLE_KANA = re.compile(r"^[\u3040-\u30ff]$")
# Headwords longer than this are left out of the dictionary (they are rare set phrases): the
# longest candidate a position is looked up with.
LONGEST = 16
# Punctuation between the words of a run of other characters (Latin words, digits)
_SEPARATORS = re.compile(r"[・_（）()「」『』、。，,]")


class Lexicon:
    """Japanese headwords → English glosses, and the segmentation that applies them."""

    def __init__(self, path: Path):
        self.path = model_file(path)
        self._db: sqlite3.Connection | None = None

    def _glosses(self, candidates: list[str]) -> dict[str, str]:
        if self._db is None:
            # immutable: the file ships inside the package, possibly on a read-only disk
            self._db = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro&immutable=1",
                uri=True,
                check_same_thread=False,
            )
        marks = ",".join("?" * len(candidates))
        try:
            rows = self._db.execute(
                f"SELECT headword, gloss FROM words WHERE headword IN ({marks})", candidates
            )
            return dict(rows.fetchall())
        except sqlite3.Error as exc:
            raise ModelError(
                f"cannot read the towers model's dictionary {self.path}: {exc}; reinstall "
                "mmsearch, or rebuild it with scripts/build_lexicon_ja.py"
            ) from exc

    def translate(self, text: str) -> str | None:
        """English words for a text holding Japanese: each longest known headword, left to
        right, becomes its gloss, and runs of other characters (Latin words, digits) are kept.
        None for a text without kana or kanji, or with no headword the dictionary knows."""
        if not _JAPANESE.search(text):
            return None
        words, found, i = [], False, 0
        while i < len(text):
            if not _JAPANESE.match(text[i]):
                end = i
                while end < len(text) and not _JAPANESE.match(text[end]):
                    end += 1
                words.extend(_SEPARATORS.sub(" ", text[i:end]).split())
                i = end
                continue
            candidates = [text[i:end] for end in range(min(len(text), i + LONGEST), i, -1)]
            candidates = [word for word in candidates if not _SINGLE_KANA.match(word)]
            glosses = self._glosses(candidates) if candidates else {}
            word = next((word for word in candidates if word in glosses), None)
            if word is None:
                i += 1  # a character no headword starts with: its meaning stays in the query
                continue
            words.append(glosses[word])
            found, i = True, i + len(word)
        return " ".join(words) if found else None
