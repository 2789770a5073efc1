"""Embeddings in and out of a library as Parquet shards, the form clip-retrieval and most
embedding pipelines exchange: for very large collections, for moving a library's vectors to
another machine, or for vectors computed without a library (a batch job on a cluster).

A folder of shards holds ``model.json`` (the model's identity, as a library records it: vectors
of another model are refused on import) and ``part-<first id>.parquet`` files of up to
``shard_rows`` images each, one row per image or video:

    path, size, mtime_ns, content_hash, width, height, format, taken_at, taken_from,
    duration_s, poster_t, vector (float32 × dim), moment_t (list), moment_vectors (list)

Both directions can be interrupted and run again. An export writes each shard to a temporary
name and renames it when complete, and carries on after the last complete shard; an import
stores each shard in transactions of its own and stores a row that is already there again
(by path), so running it again converges.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from mmsearch.errors import InputError, ModelMismatchError
from mmsearch.records import ImageRecord, MomentRecord, Words
from mmsearch.storage.moments import load_moments
from mmsearch.storage.schema import ImageRow
from mmsearch.temporary import remove_leftovers, temporary_name
from mmsearch.words import name_words

FORMAT = "mmsearch-embeddings"
VERSION = 1
MODEL_FILE = "model.json"
SHARD_ROWS = 100_000  # rows per shard: about 200 MB of vectors at 512 dimensions
_IMPORT_BATCH = 2_000  # rows per transaction on import
INSTALL_HINT = "Parquet needs pyarrow: pip install 'mmsearch[parquet]'"
_COLUMNS = ("path", "size", "mtime_ns", "content_hash", "width", "height", "format", "taken_at",
            "taken_from", "duration_s", "poster_t")  # fmt: skip


@dataclass(frozen=True)
class Transfer:
    """What an export or import did."""

    rows: int  # images and videos written or stored by this run
    shards: int  # shard files written or read by this run
    skipped_shards: int = 0  # export: complete shards from an earlier run, kept

    def to_dict(self) -> dict:
        return {"rows": self.rows, "shards": self.shards, "skipped_shards": self.skipped_shards}


def export_embeddings(library, folder: str | os.PathLike[str], *, shard_rows=SHARD_ROWS):
    """Write the library's images, videos and vectors into ``folder`` as Parquet shards.

    Raises:
        InputError: pyarrow is not installed, the folder holds another model's shards or
            cannot be written, or the library holds no vectors.
    """
    pq, pa = _pyarrow()
    folder = Path(folder)
    model = library.info().model
    if model is None:
        raise InputError(f"library {library.library_dir} holds no vectors to export")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_model(folder, model)
    except OSError as exc:
        raise InputError(f"cannot write {folder}: {exc.strerror}") from exc
    remove_leftovers(folder)  # what a killed export was writing
    after, kept = _last_exported(folder, pq)
    rows = shards = 0
    for chunk in _stored_chunks(library.engine, after, shard_rows):
        table = _table(chunk, int(model["dim"]), pa)
        target = folder / f"part-{chunk[0].id:012d}.parquet"
        partial = temporary_name(target)
        metadata = {b"last_id": str(chunk[-1].id).encode()}
        pq.write_table(table.replace_schema_metadata(metadata), partial)
        partial.replace(target)
        rows, shards = rows + len(chunk), shards + 1
    return Transfer(rows, shards, kept)


def import_embeddings(library, folder: str | os.PathLike[str], *, remap=()) -> Transfer:
    """Store the images, videos and vectors of the shards in ``folder`` (see the module
    docstring); ``remap`` holds (old prefix, new prefix) pairs for paths that moved.

    Raises:
        InputError: pyarrow is not installed, the folder holds no shards, a shard is not
            Parquet or lacks a column, or a vector is damaged (wrong length, not unit length).
        ModelMismatchError: the shards hold another model's vectors than the library's.
    """
    pq, _ = _pyarrow()
    folder = Path(folder)
    model = _read_model(folder)
    _check_model(library, model, folder)
    files = sorted(folder.glob("part-*.parquet"))
    if not files:
        raise InputError(f"{folder} holds no part-*.parquet shards")
    dim, rows = int(model["dim"]), 0
    with library.writing():
        for file in files:
            for batch in _shard_batches(file, pq):
                records, vectors = _records(batch, dim, file, remap)
                library.images.put_images(records, vectors)
                rows += len(records)
        library.flush()
    return Transfer(rows, len(files))


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InputError(INSTALL_HINT) from exc
    return pq, pa


def _write_model(folder: Path, model: dict) -> None:
    path = folder / MODEL_FILE
    if path.exists():
        held = _read_model(folder)
        if held["weights"] != model["weights"]:
            raise InputError(
                f"{folder} holds vectors of model {held['model']}, not this library's "
                f"{model['model']}; export into another folder"
            )
        return
    path.write_text(json.dumps({"format": FORMAT, "version": VERSION, **model}, indent=2))


def _read_model(folder: Path) -> dict:
    path = folder / MODEL_FILE
    try:
        model = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(
            f"{folder} has no {MODEL_FILE}: it says which model made the vectors, and "
            "`mmsearch export-embeddings` writes it"
        ) from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    if not isinstance(model, dict) or model.get("format") != FORMAT or "weights" not in model:
        raise InputError(f"{path} is not an mmsearch embeddings description")
    if int(model.get("version", 0)) > VERSION:
        raise InputError(f"{path} is of a newer format (version {model['version']}); upgrade")
    return model


def _check_model(library, model: dict, folder: Path) -> None:
    ours = library.model_identity()
    if ours["weights"] != model["weights"] or int(ours["dim"]) != int(model["dim"]):
        raise ModelMismatchError(
            f"{folder} holds vectors of model {model['model']}; library "
            f"{library.library_dir} is of {ours['model']}, whose vectors are not comparable. "
            f"Import into a library of {model['model']} (--model {model['model']})"
        )


def _last_exported(folder: Path, pq) -> tuple[int, int]:
    """(the last id in the complete shards of an earlier export, how many there are)."""
    last, count = 0, 0
    for file in folder.glob("part-*.parquet"):
        try:
            metadata = pq.read_schema(file).metadata or {}
            last, count = max(last, int(metadata[b"last_id"])), count + 1
        except (OSError, KeyError, ValueError):
            file.unlink()  # not a shard an export wrote whole: written again
    return last, count


@dataclass(frozen=True)
class _Stored:
    """One image or video as exported."""

    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    width: int
    height: int
    format: str | None
    taken_at: str | None
    taken_from: str | None
    duration_s: float | None
    poster_t: float | None
    vector: np.ndarray
    moment_t: tuple[float, ...] | None = None
    moment_vectors: tuple[np.ndarray, ...] = ()


def _stored_chunks(engine, after: int, rows: int) -> Iterator[list[_Stored]]:
    """The stored images with ids above ``after``, in id order, ``rows`` at a time (one read
    transaction each: memory holds one shard)."""
    columns = [getattr(ImageRow, name) for name in ("id", *_COLUMNS)]
    while True:
        with Session(engine) as session:
            stmt = select(*columns, ImageRow.embedding).where(ImageRow.id > after)
            found = session.execute(stmt.order_by(ImageRow.id).limit(rows)).all()
            if not found:
                return
            videos = [row.id for row in found if row.duration_s is not None]
            moments = load_moments(session, videos)
        chunk = []
        for *values, blob in found:
            held = moments.get(values[0])
            chunk.append(
                _Stored(*values, np.frombuffer(blob, np.float32),
                        tuple(m.t for m in held) if held else None,
                        tuple(m.vector for m in held) if held else ())
            )  # fmt: skip
        yield chunk
        after = found[-1].id


def _table(chunk, dim: int, pa):
    vector_type = pa.list_(pa.float32(), dim)
    columns = {name: [getattr(row, name) for row in chunk] for name in _COLUMNS}
    vectors = np.stack([row.vector for row in chunk]).astype(np.float32)
    columns["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim)
    columns["moment_t"] = [
        list(row.moment_t) if row.moment_t is not None else None for row in chunk
    ]
    columns["moment_vectors"] = pa.array(
        [[v.tolist() for v in row.moment_vectors] if row.moment_t is not None else None
         for row in chunk],
        type=pa.list_(vector_type),
    )  # fmt: skip
    return pa.table(columns)


def _shard_batches(file: Path, pq) -> Iterator:
    try:
        shard = pq.ParquetFile(file)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
        raise InputError(f"{file} is not a Parquet file ({exc})") from exc
    missing = {"path", "vector"} - set(shard.schema_arrow.names)
    if missing:
        raise InputError(f"{file} lacks the column(s) {', '.join(sorted(missing))}")
    yield from shard.iter_batches(batch_size=_IMPORT_BATCH)


def _records(batch, dim: int, file: Path, remap) -> tuple[list[ImageRecord], np.ndarray]:
    rows = batch.to_pylist()
    vectors = _vectors([row["vector"] for row in rows], dim, file)
    records = []
    for row in rows:
        path = _remapped(str(row["path"]), remap)
        if not os.path.isabs(path):
            raise InputError(f"{file}: path {path!r} is not absolute")
        moments = ()
        if row.get("moment_t"):
            moment_vectors = _vectors(row["moment_vectors"], dim, file)
            moments = tuple(
                MomentRecord(float(t), v)
                for t, v in zip(row["moment_t"], moment_vectors, strict=True)
            )
        columns = {name: row.get(name) for name in _COLUMNS}
        records.append(
            ImageRecord(
                **{**columns, "path": path, "size": columns["size"] or 0,
                   "mtime_ns": columns["mtime_ns"] or 0, "width": columns["width"] or 0,
                   "height": columns["height"] or 0},
                texts=(Words("name", name_words(path)),),
                moments=moments,
            )
        )  # fmt: skip
    return records, vectors


def _vectors(values, dim: int, file: Path) -> np.ndarray:
    if any(v is None or len(v) != dim for v in values):
        raise InputError(f"{file}: a vector is missing or not of {dim} dimensions")
    vectors = np.asarray(values, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1)
    if not np.all(np.isfinite(vectors)) or not np.allclose(norms, 1.0, atol=1e-3):
        raise InputError(f"{file}: vectors must be finite unit vectors, as encoders make them")
    return vectors


def _remapped(path: str, remap) -> str:
    for old, new in remap:
        if path == old or path.startswith(old.rstrip("/") + "/"):
            return new.rstrip("/") + path[len(old.rstrip("/")) :]
    return path
