"""``mmsearch check``: verify that a library answers correctly, and repair what is derived.

What is checked: the database file itself (SQLite's integrity check), the model the library was
built with (its weights must still be the ones recorded), every stored vector (right length,
finite, unit length), and each FAISS index against the database (current generation, the same
ids, the same vectors). The database is the truth, so a damaged index is rebuilt from it; a
damaged image vector is dropped so the next ``mmsearch index`` encodes that file again; a damaged
text vector is encoded again from its text. A damaged database cannot be repaired from within:
the report says so.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from mmsearch.encoders.registry import weights_id
from mmsearch.errors import DatabaseError
from mmsearch.imaging.fingerprint import content_hash
from mmsearch.index import pgvector_index
from mmsearch.index.derived import MODALITIES, ROWS
from mmsearch.index.faiss_index import FaissIndex
from mmsearch.library import Library
from mmsearch.storage.engine import bump_generation, chunked, get_setting
from mmsearch.storage.schema import KEYWORD_INDEX, CachedQuery, ImageRow, SkippedFile, TextRow

NORM_TOLERANCE = 1e-3  # vectors are stored unit length; float32 rounding stays far below this
INDEX_TOLERANCE = 1e-5  # an index holds exact copies of the stored vectors
_CHUNK = 10_000


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a library."""

    part: str  # "database", "model", "images", "texts", "images.faiss", "skipped_files", ...
    message: str
    repairable: bool

    def to_dict(self) -> dict:
        return asdict(self)


def check_library(library: Library, *, files: bool = False) -> list[Problem]:
    """Everything wrong with the library; an empty list means it is consistent. ``files``
    also reads every unchanged image file whose hash is stored, to prove it (``--files``)."""
    try:
        problems = _check_all(library)
        return problems + _check_files(library) if files and not problems else problems
    except DatabaseError as exc:
        return [damaged_database(str(exc.orig))]


def _check_all(library: Library) -> list[Problem]:
    problems = _check_database(library)
    if problems:
        return problems  # nothing else can be trusted to read correctly
    problems += _check_model(library)
    dim = _stored_dim(library)
    for modality in MODALITIES:
        bad = _bad_vectors(library, modality, dim)
        if bad:
            problems.append(
                Problem(
                    modality,
                    f"{len(bad)} stored {modality[:-1]} vectors are damaged (wrong length, not "
                    f"finite or not unit length), ids {_some(bad)}",
                    repairable=True,
                )
            )
        problems += _check_index(library, modality, dim, exclude=bad)
    problems += _check_skipped(library)
    problems += _check_query_cache(library, dim)
    problems += _check_keyword_index(library)
    return problems


def repair_library(library: Library, problems: list[Problem]) -> list[str]:
    """Repair what the problems allow; returns what was done, one line each."""
    done = []
    parts = {p.part for p in problems if p.repairable}
    if "files" in parts:
        parts.add("images:files")  # image rows removed: their index is rebuilt too
    dim = _stored_dim(library)
    if "images" in parts:
        bad = _bad_vectors(library, "images", dim)
        removed = library.images.remove_images(library.images.paths_of(bad))
        done.append(
            f"removed {removed} images with damaged vectors; `mmsearch index` on their folders "
            "encodes them again"
        )
    if "moments" in parts:
        bad = _bad_vectors(library, "moments", dim)
        videos = sorted(set(library.images.moment_owners(bad).values()))
        removed = library.images.remove_images(library.images.paths_of(videos))
        done.append(
            f"removed {removed} videos with damaged moment vectors; `mmsearch index` on their "
            "folders encodes them again"
        )
    if "files" in parts:
        wrong = _files_changed_in_place(library)
        removed = library.images.remove_images(library.images.paths_of(wrong))
        done.append(
            f"removed {removed} images whose files changed under an unchanged time; `mmsearch "
            "index` on their folders encodes them again"
        )
    if "texts" in parts:
        done.append(_reencode_texts(library, _bad_vectors(library, "texts", dim)))
    if "query_cache" in parts:
        with library.transaction() as session:
            cleared = session.execute(delete(CachedQuery)).rowcount
        done.append(f"cleared the query cache ({cleared} queries are encoded again when asked)")
    if "keywords" in parts:
        rebuild = f"INSERT INTO {KEYWORD_INDEX}({KEYWORD_INDEX}) VALUES ('rebuild')"
        with library.transaction() as session:
            session.execute(text(rebuild))
        done.append("rebuilt the keyword index from the stored words")
    if "skipped_files" in parts:
        with library.transaction() as session:
            indexed = select(ImageRow.path)
            gone = session.execute(delete(SkippedFile).where(SkippedFile.path.in_(indexed)))
        done.append(f"dropped {gone.rowcount} skip records of files that are indexed")
    if "image_vectors" in parts:
        parts.add("images")
    for modality in MODALITIES:
        if f"{modality}.faiss" in parts or modality in parts or f"{modality}:files" in parts:
            count = library.rebuild_index(modality)
            where = pgvector_index.TABLE if library.index_in_database(modality) else (
                library.index_path(modality).name)  # fmt: skip
            done.append(f"rebuilt {where} from the database ({count})")
    return done


def _check_database(library: Library) -> list[Problem]:
    if library.engine.dialect.name != "sqlite":
        return []  # server databases check themselves
    with library.engine.connect() as connection:
        result = [row[0] for row in connection.execute(text("PRAGMA integrity_check"))]
    return [] if result == ["ok"] else [damaged_database("; ".join(result[:5]))]


def damaged_database(details: str) -> Problem:
    """The problem report for a database SQLite cannot read."""
    return Problem(
        "database",
        f"the database is damaged ({details}). mmsearch cannot repair its own database: restore "
        "library.db from a backup, or salvage it with "
        "`sqlite3 library.db .recover | sqlite3 recovered.db`",
        repairable=False,
    )


def _check_model(library: Library) -> list[Problem]:
    with Session(library.engine) as session:
        stored = get_setting(session, "model")
        items = (
            session.execute(select(ImageRow.id).limit(1)).first()
            or session.execute(select(TextRow.id).limit(1)).first()
        )
    if stored is None:
        if items:
            return [Problem("model", "items are stored but no model is recorded", False)]
        return []
    try:
        current = weights_id(library.model)
    except OSError as exc:
        return [Problem("model", f"the weights of {stored['model']} cannot be read: {exc}", False)]
    if current != stored["weights"]:
        return [
            Problem(
                "model",
                f"the weights of {stored['model']} are not the ones the library was built with "
                f"(recorded {stored['weights']}, now {current}); rebuild the library with "
                "the new model, or restore the old weights",
                repairable=False,
            )
        ]
    return []


def _stored_dim(library: Library) -> int | None:
    with Session(library.engine) as session:
        model = get_setting(session, "model")
    return int(model["dim"]) if model else None


def _stored_vectors(library: Library, modality: str):
    """(ids, raw blobs) of a modality, in chunks."""
    row = ROWS[modality]
    with Session(library.engine) as session:
        result = session.execute(select(row.id, row.embedding).order_by(row.id))
        for chunk in result.partitions(_CHUNK):
            yield [i for i, _ in chunk], [b for _, b in chunk]


def _bad_vectors(library: Library, modality: str, dim: int | None) -> list[int]:
    bad = []
    for ids, blobs in _stored_vectors(library, modality):
        bad += [id_ for id_, blob in zip(ids, blobs, strict=True) if not _sound(blob, dim)]
    return bad


def _check_index(library: Library, modality: str, dim, *, exclude) -> list[Problem]:
    if library.index_in_database(modality):
        return _check_vectors_in_database(library, modality, exclude)
    path = library.index_path(modality)
    part = path.name
    with Session(library.engine) as session:
        generation = int(get_setting(session, f"generation.{modality}", 0))
        count = session.execute(select(func.count()).select_from(ROWS[modality])).scalar_one()
    if not count and not path.exists():
        return []
    if not path.exists():
        return [Problem(part, f"{path} is missing", repairable=True)]
    index = FaissIndex.load(path, mapped=True)  # read only: no copy of a large index
    if index is None:
        return [Problem(part, f"{path} is truncated or not an mmsearch index", repairable=True)]
    if index.generation != generation:
        return [
            Problem(
                part,
                f"{path} is from an older state of the library (generation {index.generation}, "
                f"database at {generation})",
                repairable=True,
            )
        ]
    indexed = dict(zip(*index.items(), strict=True))
    missing, mismatched = _compare(library, modality, indexed, exclude)
    problems = []
    if missing:
        message = f"{len(missing)} stored items are missing from {path} (ids {_some(missing)})"
        problems.append(Problem(part, message, repairable=True))
    if indexed:
        extra = sorted(indexed)
        message = f"{len(extra)} ids in {path} have no item in the database (ids {_some(extra)})"
        problems.append(Problem(part, message, repairable=True))
    if mismatched:
        message = f"{len(mismatched)} items have other vectors in {path} (ids {_some(mismatched)})"
        problems.append(Problem(part, message, repairable=True))
    return problems


def _check_vectors_in_database(library: Library, modality: str, exclude) -> list[Problem]:
    """pgvector's copy of each vector against the row's (the truth)."""
    held = pgvector_index.stored(library.engine)
    missing, mismatched = _compare(library, modality, held, exclude)
    part, problems = pgvector_index.TABLE, []
    if missing:
        message = f"{len(missing)} stored images have no vector in {part} (ids {_some(missing)})"
        problems.append(Problem(part, message, repairable=True))
    if mismatched:
        message = f"{len(mismatched)} images have other vectors in {part} (ids {_some(mismatched)})"
        problems.append(Problem(part, message, repairable=True))
    return problems


def _compare(library: Library, modality: str, indexed: dict, exclude) -> tuple[list, list]:
    """(missing, mismatched) ids of the stored vectors against ``indexed`` (id → vector), from
    which every stored id is popped: what remains has no row."""
    missing, mismatched = [], []
    for ids, blobs in _stored_vectors(library, modality):
        for id_, blob in zip(ids, blobs, strict=True):
            vector = indexed.pop(id_, None)
            if vector is None:
                missing.append(id_)
            elif id_ not in exclude and not np.allclose(
                vector, np.frombuffer(blob, np.float32), atol=INDEX_TOLERANCE
            ):
                mismatched.append(id_)
    return missing, mismatched


def _check_files(library: Library) -> list[Problem]:
    wrong = _files_changed_in_place(library)
    if not wrong:
        return []
    return [
        Problem(
            "files",
            f"{len(wrong)} files no longer hold the content stored for them, though their size "
            f"and time are unchanged (damaged on disk?), ids {_some(wrong)}",
            repairable=True,
        )
    ]


def _files_changed_in_place(library: Library) -> list[int]:
    """Stored hashes against the files: a file whose size and modification time are as
    stored but whose bytes are not (bit rot, a tool that kept the time) would never be encoded
    again, since indexing trusts size and time. Files that are gone or changed are left to
    ``index``; files stored without a hash (no copy of them was ever possible) are not read."""
    stmt = select(ImageRow.id, ImageRow.path, ImageRow.size, ImageRow.mtime_ns,
                  ImageRow.content_hash).where(ImageRow.content_hash.is_not(None))  # fmt: skip
    with Session(library.engine) as session:
        rows = session.execute(stmt).all()
    wrong = []
    for image_id, path, size, mtime_ns, stored in rows:
        try:
            stat = os.stat(path)
            if (stat.st_size, stat.st_mtime_ns) != (size, mtime_ns):
                continue
            if content_hash(path, library.images.hash_algorithm) != stored:
                wrong.append(image_id)
        except OSError:
            continue
    return wrong


def _check_skipped(library: Library) -> list[Problem]:
    with Session(library.engine) as session:
        both = session.execute(
            select(SkippedFile.path).where(SkippedFile.path.in_(select(ImageRow.path)))
        ).scalars()
        both = list(both)
    if not both:
        return []
    return [
        Problem(
            "skipped_files",
            f"{len(both)} files are recorded both as indexed and as skipped, e.g. {both[0]}",
            repairable=True,
        )
    ]


def _check_keyword_index(library: Library) -> list[Problem]:
    """FTS5's own check that the keyword index holds exactly the words of image_texts (rank 1:
    against the content table too, which an external-content index needs)."""
    if library.engine.dialect.name != "sqlite" or library.read_only:
        return []  # FTS5 takes its check as an INSERT, which a read-only database refuses
    check = f"INSERT INTO {KEYWORD_INDEX}({KEYWORD_INDEX}, rank) VALUES ('integrity-check', 1)"
    try:
        with Session(library.engine) as session:
            session.execute(text(check))
            session.rollback()
    except DatabaseError as exc:
        message = f"the keyword index does not match the stored words ({exc.orig})"
        return [Problem("keywords", message, repairable=True)]
    return []


def _check_query_cache(library: Library, dim: int | None) -> list[Problem]:
    with Session(library.engine) as session:
        blobs = session.execute(select(CachedQuery.embedding)).scalars().all()
    bad = sum(not _sound(blob, dim) for blob in blobs)
    if not bad:
        return []
    return [Problem("query_cache", f"{bad} cached query vectors are damaged", repairable=True)]


def _sound(blob: bytes | None, dim: int | None) -> bool:
    """A stored vector of the right length, finite and of unit length."""
    if dim is None or blob is None or len(blob) != 4 * dim:
        return False
    vector = np.frombuffer(blob, np.float32)
    return bool(np.isfinite(vector).all()) and abs(np.linalg.norm(vector) - 1) <= NORM_TOLERANCE


def _reencode_texts(library: Library, ids: list[int]) -> str:
    with Session(library.engine) as session:
        rows = [
            row
            for chunk in chunked(ids)
            for row in session.execute(
                select(TextRow.id, TextRow.text).where(TextRow.id.in_(chunk))
            )
        ]
    vectors = library.encoder.encode_texts([t for _, t in rows]) if rows else []
    with library.transaction() as session:
        for (id_, _), vector in zip(rows, vectors, strict=True):
            session.execute(
                update(TextRow).where(TextRow.id == id_).values(embedding=vector.tobytes())
            )
        bump_generation(session, "texts")
    return f"encoded {len(rows)} texts again from their text"


def _some(ids: list[int], shown: int = 5) -> str:
    more = f", … ({len(ids) - shown} more)" if len(ids) > shown else ""
    return ", ".join(str(i) for i in ids[:shown]) + more
