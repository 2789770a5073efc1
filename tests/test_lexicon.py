"""The towers model's Japanese–English dictionary: how it is built, how a query is glossed, and
what the gloss does to a query's vector."""

import importlib.util
import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from mmsearch.encoders.lexicon import Lexicon
from mmsearch.encoders.registry import resolve_model, weights_id
from mmsearch.encoders.towers_encoder import TowersEncoder
from mmsearch.errors import ModelError

REPO = Path(__file__).resolve().parent.parent
BUNDLED = resolve_model("lite0-muse-clipart-memory-jmdict")
_spec = importlib.util.spec_from_file_location("build", REPO / "scripts/build_lexicon_ja.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)


def jamdict(path: Path) -> sqlite3.Connection:
    """A JMdict/JMnedict database of jamdict-data's shape, with a handful of real entries."""
    db = sqlite3.connect(path)
    for table in (
        "Sense(ID INTEGER PRIMARY KEY, idseq INTEGER)",
        "SenseGloss(sid INTEGER, lang TEXT, gend TEXT, text TEXT)",
        "pos(sid INTEGER, text TEXT)",
        "misc(sid INTEGER, text TEXT)",
        "Kanji(ID INTEGER PRIMARY KEY, idseq INTEGER, text TEXT)",
        "Kana(ID INTEGER PRIMARY KEY, idseq INTEGER, text TEXT, nokanji BOOLEAN)",
        "KJP(kid INTEGER, text TEXT)",
        "KNP(kid INTEGER, text TEXT)",
        "NETranslation(ID INTEGER PRIMARY KEY, idseq INTEGER)",
        "NETransGloss(tid INTEGER, lang TEXT, gend TEXT, text TEXT)",
        "NETransType(tid INTEGER, text TEXT)",
        "NEKana(ID INTEGER PRIMARY KEY, idseq INTEGER, text TEXT, nokanji BOOLEAN)",
    ):
        db.execute(f"CREATE TABLE {table}")
    entries = [  # idseq, kanji, kana, gloss, pos, misc, common
        (1, "犬", "いぬ", "dog (Canis (lupus) familiaris)", "noun (common) (futsuumeishi)", "", 1),
        (2, "武道", "ぶどう", "martial arts", "noun (common) (futsuumeishi)", "", 0),
        (
            3,
            "葡萄",
            "ぶどう",
            "grape",
            "noun (common) (futsuumeishi)",
            "usually written using kana alone",
            1,
        ),  # fmt: skip
        (4, None, "の", "indicates possessive", "particle", "", 1),
        (5, "自転車", "じてんしゃ", "bicycle", "noun (common) (futsuumeishi)", "", 1),
        (6, "赤い", "あかい", "red", "adjective (keiyoushi)", "", 1),
    ]
    for idseq, kanji, kana, gloss, pos, misc, common in entries:
        db.execute("INSERT INTO Sense VALUES (?, ?)", (idseq, idseq))
        db.execute("INSERT INTO SenseGloss VALUES (?, 'eng', NULL, ?)", (idseq, gloss))
        db.execute("INSERT INTO pos VALUES (?, ?)", (idseq, pos))
        if misc:
            db.execute("INSERT INTO misc VALUES (?, ?)", (idseq, misc))
        if kanji:
            db.execute("INSERT INTO Kanji VALUES (?, ?, ?)", (idseq, idseq, kanji))
            if common:
                db.execute("INSERT INTO KJP VALUES (?, 'ichi1')", (idseq,))
        db.execute("INSERT INTO Kana VALUES (?, ?, ?, 0)", (idseq, idseq, kana))
        if common:
            db.execute("INSERT INTO KNP VALUES (?, 'ichi1')", (idseq,))
    names = [(10, "サモア", "Samoa", "place"), (11, "タロ", "Taro", "given")]
    for idseq, kana, gloss, kind in names:
        db.execute("INSERT INTO NETranslation VALUES (?, ?)", (idseq, idseq))
        db.execute("INSERT INTO NETransGloss VALUES (?, 'eng', NULL, ?)", (idseq, gloss))
        db.execute("INSERT INTO NETransType VALUES (?, ?)", (idseq, kind))
        db.execute("INSERT INTO NEKana VALUES (?, ?, ?, 0)", (idseq, idseq, kana))
    db.commit()
    return db


def test_the_dictionary_is_built_from_jmdict(tmp_path):
    db = jamdict(tmp_path / "jamdict.db")
    words = build.words(db)
    assert words["犬"] == words["いぬ"] == "dog"  # the notes in parentheses left out
    assert words["ぶどう"] == "grape"  # the common word that is written in kana, not 武道
    assert words["武道"] == "martial arts"
    assert "の" not in words  # particles carry no subject
    assert build.names(db, words) == {"サモア": "Samoa", "タロ": "Taro"}
    db.close()
    out = tmp_path / "lexicon_ja.sqlite"
    build.main(str(tmp_path / "jamdict.db"), str(out))
    lexicon = Lexicon(out)
    assert lexicon.translate("赤い自転車") == "red bicycle"  # longest headwords, left to right
    assert lexicon.translate("犬の自転車2") == "dog bicycle 2"  # の: no headword; digits kept
    assert lexicon.translate("サモア・flag_1") == "Samoa flag 1"
    assert lexicon.translate("a red bicycle") is None  # nothing Japanese: nothing to gloss
    assert lexicon.translate("ぽぽ") is None  # Japanese the dictionary does not know


def test_the_bundled_dictionary_glosses_what_the_text_tower_misreads():
    lexicon = Lexicon(BUNDLED.folder / "lexicon_ja.sqlite")
    assert lexicon.translate("ルーペ") == "magnifying glass"
    assert lexicon.translate("トランプ") == "playing cards"
    assert lexicon.translate("金星") == "Venus"
    assert lexicon.translate("赤い自転車") == "red bicycle"
    assert lexicon.translate("サモア") == "Samoa"


def test_english_vectors_are_the_models_without_the_dictionary():
    """Only texts with kana or kanji are glossed: English ones get exactly the vectors of
    lite0-muse-clipart-memory, whose heads and memory this model shares."""
    texts = ["a dog", "a red bicycle on the road", "Samoa"]
    with_dictionary = TowersEncoder(BUNDLED).encode_texts(texts)
    without = TowersEncoder(resolve_model("lite0-muse-clipart-memory")).encode_texts(texts)
    assert np.array_equal(with_dictionary, without)


def test_a_glossed_japanese_query_moves_toward_its_english_meaning():
    glossed = TowersEncoder(BUNDLED)
    plain = TowersEncoder(resolve_model("lite0-muse-clipart-memory"))
    english = plain.encode_texts(["magnifying glass", "playing cards", "Venus"])
    japanese = ["ルーペ", "トランプ", "金星"]
    before = (plain.encode_texts(japanese) * english).sum(axis=1)
    after = (glossed.encode_texts(japanese) * english).sum(axis=1)
    assert (after > before + 0.05).all(), (before, after)
    assert np.allclose(np.linalg.norm(glossed.encode_texts(japanese), axis=1), 1, atol=1e-5)


def copy_of_the_bundled_model(folder: Path) -> Path:
    """The bundled model's config, dictionary and class names in ``folder``, reading the
    installed heads."""
    folder.mkdir()
    config = json.loads((BUNDLED.folder / "towers_config.json").read_text())
    config["heads"] = str(BUNDLED.weights_path.resolve())
    (folder / "towers_config.json").write_text(json.dumps(config))
    for name in ("lexicon_ja.sqlite", "classes.npz"):
        shutil.copy(BUNDLED.folder / name, folder)
    return folder


def test_a_missing_dictionary_is_a_clear_error(tmp_path):
    folder = copy_of_the_bundled_model(tmp_path / "model")
    (folder / "lexicon_ja.sqlite").unlink()
    spec = resolve_model(str(folder))
    for opening in (TowersEncoder, weights_id):  # the encoder, and a library's identity check
        with pytest.raises(ModelError, match=r"file .*lexicon_ja.sqlite is missing; reinstall"):
            opening(spec)


def test_a_damaged_dictionary_is_a_clear_error_and_english_still_works(tmp_path):
    folder = copy_of_the_bundled_model(tmp_path / "model")
    (folder / "lexicon_ja.sqlite").write_bytes(b"not a database" * 100)
    encoder = TowersEncoder(resolve_model(str(folder)))
    assert encoder.encode_texts(["a dog"]).shape == (1, 512)
    with pytest.raises(ModelError, match="cannot read the towers model's dictionary .* rebuild"):
        encoder.encode_texts(["犬"])
