"""Caption and text collection files: good rows go in, bad rows are reported by line number."""

from __future__ import annotations

import pytest

from indexer.texts import read_text_file
from mmsearch.errors import TextFileError


def test_plain_text_one_per_line(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("a red bicycle\n\n  a   dog on a beach \n")
    parsed = read_text_file(path)
    assert [r.text for r in parsed.records] == ["a red bicycle", "a dog on a beach"]
    assert parsed.bad_rows == []


def test_jsonl_with_ids_metadata_and_bad_rows(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"text": "a cat", "id": "c1", "source": "flickr"}\n'
        "not json\n"
        '{"id": "c2"}\n'
        '["a list"]\n'
        '{"text": "", "id": "c3"}\n'
        '{"text": "another cat", "id": "c1"}\n'
        '{"text": 5}\n'
    )
    parsed = read_text_file(path)
    assert [(r.external_id, r.text, r.meta) for r in parsed.records] == [
        ("c1", "a cat", {"source": "flickr", "line": 1})
    ]
    assert parsed.bad_rows == [
        (2, "not valid JSON (Expecting value)"),
        (3, "no 'text' field"),
        (4, "not a JSON object"),
        (5, "empty text"),
        (6, "duplicate id 'c1' (first on line 1)"),
        (7, "text is int, not a string"),
    ]


def test_csv_named_column(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('id,caption,author\n1,"a boat, at sea",ann\n2,,bob\n3,a kite,cy,extra\n')
    parsed = read_text_file(path, text_field="caption")
    assert [(r.external_id, r.text, r.meta["author"]) for r in parsed.records] == [
        ("1", "a boat, at sea", "ann")
    ]
    assert parsed.bad_rows == [(3, "empty text"), (4, "more fields than the header")]


def test_csv_without_the_column(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("id,caption\n1,a boat\n")
    with pytest.raises(TextFileError) as caught:
        read_text_file(path)
    assert str(caught.value) == (
        f"{path} has no 'text' column (columns: id, caption); name the text column with "
        "--text-field"
    )


def test_not_utf8(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes("caf\u00e9\n".encode() + "na\u00efve\n".encode("latin-1"))
    with pytest.raises(TextFileError) as caught:
        read_text_file(path)
    assert str(caught.value) == (
        f"{path} is not UTF-8 text (line 2); convert it, e.g. "
        "`iconv -f latin1 -t utf-8 c.txt > fixed.txt`"
    )


def test_unknown_extension(tmp_path):
    path = tmp_path / "c.dat"
    path.write_text("x\n")
    with pytest.raises(TextFileError, match="pass --format"):
        read_text_file(path)
    assert [r.text for r in read_text_file(path, format="txt").records] == ["x"]


def test_nothing_usable(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"caption": "x"}\n')
    with pytest.raises(TextFileError) as caught:
        read_text_file(path)
    assert str(caught.value) == f"{path} holds no usable texts: line 1: no 'text' field"


def test_missing_file(tmp_path):
    with pytest.raises(TextFileError, match="text file not found"):
        read_text_file(tmp_path / "none.txt")


def test_huge_line_is_a_bad_row(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("ok\n" + "x" * 20_000 + "\n")
    parsed = read_text_file(path)
    assert [r.text for r in parsed.records] == ["ok"]
    assert parsed.bad_rows == [(2, "text of 20000 characters (limit 10000)")]
