"""Read caption and text collections: plain text, JSONL and CSV.

Bad rows never stop a file: each is reported with its line number and skipped, the rest goes in.
A file that cannot be read at all (missing, not UTF-8, no usable rows, no text column) is an
:class:`~mmsearch.errors.TextFileError` that says what to fix.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from mmsearch.errors import TextFileError
from mmsearch.records import TextRecord

FORMATS = ("txt", "jsonl", "csv")
_SUFFIX_FORMAT = {
    ".txt": "txt",
    ".text": "txt",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
}
MAX_TEXT_CHARS = 10_000  # longer "captions" are almost always a broken file; CLIP reads ~77 tokens


@dataclass
class TextFile:
    records: list[TextRecord] = field(default_factory=list)
    bad_rows: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)


def read_text_file(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    text_field: str = "text",
    id_field: str = "id",
) -> TextFile:
    """Parse a collection file.

    Args:
        path: the file.
        format: ``txt`` (one text per line), ``jsonl`` (objects with a ``text`` field, optional
            ``id``, other fields kept as metadata) or ``csv`` (a header row, a text column);
            default: from the file extension.
        text_field: the JSONL field or CSV column holding the text.
        id_field: the JSONL field or CSV column holding an optional id.

    Raises:
        TextFileError: the file cannot be read or holds no usable text.
    """
    path = Path(path)
    format = format or _SUFFIX_FORMAT.get(path.suffix.lower())
    if format not in FORMATS:
        raise TextFileError(
            f"cannot tell the format of {path} from its extension; pass --format "
            f"({', '.join(FORMATS)})"
        )
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TextFileError(f"text file not found: {path}") from None
    except OSError as exc:
        raise TextFileError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TextFileError(
            f"{path} is not UTF-8 text (line {line}); convert it, e.g. "
            f"`iconv -f latin1 -t utf-8 {path.name} > fixed.{format}`"
        ) from exc
    parsed = {"txt": _read_txt, "jsonl": _read_jsonl, "csv": _read_csv}[format](
        content, text_field, id_field, path
    )
    _drop_duplicate_ids(parsed)
    if not parsed.records:
        problems = "; ".join(f"line {n}: {why}" for n, why in parsed.bad_rows[:3])
        raise TextFileError(f"{path} holds no usable texts{': ' + problems if problems else ''}")
    return parsed


def _check_text(text: object, out: TextFile, line: int) -> str | None:
    if not isinstance(text, str):
        out.bad_rows.append((line, f"text is {type(text).__name__}, not a string"))
        return None
    text = " ".join(text.split())
    if not text:
        out.bad_rows.append((line, "empty text"))
        return None
    if len(text) > MAX_TEXT_CHARS:
        out.bad_rows.append((line, f"text of {len(text)} characters (limit {MAX_TEXT_CHARS})"))
        return None
    return text


def _read_txt(content: str, _text_field, _id_field, _path) -> TextFile:
    out = TextFile()
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue  # blank lines separate paragraphs; they are not rows
        text = _check_text(line, out, number)
        if text is not None:
            out.records.append(TextRecord(text=text, meta={"line": number}))
    return out


def _read_jsonl(content: str, text_field: str, id_field: str, _path) -> TextFile:
    out = TextFile()
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            out.bad_rows.append((number, f"not valid JSON ({exc.msg})"))
            continue
        if not isinstance(obj, dict):
            out.bad_rows.append((number, "not a JSON object"))
            continue
        if text_field not in obj:
            out.bad_rows.append((number, f"no {text_field!r} field"))
            continue
        text = _check_text(obj.pop(text_field), out, number)
        if text is None:
            continue
        external_id = obj.pop(id_field, None)
        if external_id is not None and not isinstance(external_id, (str, int)):
            out.bad_rows.append((number, f"{id_field!r} must be a string or a number"))
            continue
        out.records.append(
            TextRecord(
                text=text,
                external_id=None if external_id is None else str(external_id),
                meta={**obj, "line": number},
            )
        )
    return out


def _read_csv(content: str, text_field: str, id_field: str, path) -> TextFile:
    out = TextFile()
    reader = csv.DictReader(io.StringIO(content, newline=""))
    if not reader.fieldnames or text_field not in reader.fieldnames:
        columns = ", ".join(reader.fieldnames or []) or "none"
        raise TextFileError(
            f"{path} has no {text_field!r} column (columns: {columns}); "
            "name the text column with --text-field"
        )
    for row in reader:
        number = reader.line_num
        if None in row:
            out.bad_rows.append((number, "more fields than the header"))
            continue
        text = _check_text(row.pop(text_field), out, number)
        if text is None:
            continue
        external_id = row.pop(id_field, None) or None
        out.records.append(
            TextRecord(text=text, external_id=external_id, meta={**row, "line": number})
        )
    return out


def _drop_duplicate_ids(parsed: TextFile) -> None:
    seen: dict[str, int] = {}
    kept = []
    for record in parsed.records:
        line = record.meta["line"]
        if record.external_id is not None:
            if record.external_id in seen:
                parsed.bad_rows.append(
                    (
                        line,
                        f"duplicate id {record.external_id!r} (first on line "
                        f"{seen[record.external_id]})",
                    )
                )
                continue
            seen[record.external_id] = line
        kept.append(record)
    parsed.records = kept
    parsed.bad_rows.sort()


def read_descriptions(path: str | os.PathLike[str]) -> dict[str, str]:
    """A captioned-images file (the ``train``/``eval`` JSONL: ``{"image": ..., "caption": ...}``
    or ``"captions": [...]``) as image path (absolute, resolved) → its description, the
    captions joined. Paths are relative to the file's folder and must lie inside it.

    Raises:
        TextFileError: the file is missing or malformed (every bad line is named).
    """
    from mmsearch.errors import TrainingError
    from mmsearch.train.captioned import read_captioned

    try:
        samples = read_captioned(path)
    except TrainingError as exc:
        raise TextFileError(str(exc)) from exc
    return {os.path.realpath(s.image): "\n".join(s.captions) for s in samples}
