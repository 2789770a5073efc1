"""``mmsearch index``: discover → decode (worker processes) → encode (batches) → store.

The encoder is the expensive step, so decoding runs ahead of it in worker processes with a
bounded number of files in flight (memory stays flat however large the folder). Every batch is
stored in its own transaction, so an interrupted run loses at most the batch in flight and the
next run carries on from there: unchanged files are recognised by size and modification time,
files renamed or moved on their disk by their inode too. A new or changed file that could be a
copy (see :mod:`mmsearch.storage.identity`) is hashed; content the library already holds (a
duplicate, a file moved from another disk or merely touched) takes its stored embedding instead
of being decoded and encoded again.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import partial

import numpy as np

import indexer.ray_engine as ray_engine
from indexer.decode import Decoded, decode_for_model, hash_for
from indexer.discover import FoundFile, discover
from indexer.text_pass import read_unread_words
from indexer.workers import decode_all, progress_bar
from mmsearch.errors import InputError
from mmsearch.imaging.fingerprint import KnownContent
from mmsearch.imaging.ocr import LANGUAGES, install_hint, ocr_available
from mmsearch.imaging.pictures import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS
from mmsearch.imaging.raw import RAW_EXTENSIONS
from mmsearch.imaging.video import VIDEO_EXTENSIONS, is_video_path, poster_index
from mmsearch.library import Library
from mmsearch.paths import is_at_or_under, is_under
from mmsearch.records import ImageRecord, MomentRecord, Words, mtime_iso
from mmsearch.storage.catalogue import SHOT_COLUMNS
from mmsearch.words import name_words


@dataclass
class IndexSummary:
    """What an index run did."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    moved: int = 0  # renamed or moved within their file system: recognised, nothing read
    reused: int = 0  # of added and updated: took a stored embedding of the same content
    videos: int = 0  # of added and updated: videos, with their moments (frames stored)
    moments: int = 0
    described: int = 0  # images given a description (index --descriptions)
    ocr_read: int = 0  # images whose text in the picture was read (index --ocr)
    metadata_read: int = 0  # stored images whose embedded metadata was read (older libraries)
    # {path, message} of metadata fields left out (malformed XMP, f/0): the images are indexed
    metadata_problems: list[dict] = field(default_factory=list)

    def note_problems(self, decoded) -> None:
        for message in decoded.problems:
            if len(self.metadata_problems) < 1000:
                self.metadata_problems.append({"path": decoded.path, "message": message})

    ocr_problem: str | None = None  # why OCR did not run (not installed) or failed, first one
    skipped: dict[str, int] = field(default_factory=dict)  # reason → count
    skipped_files: list[dict] = field(default_factory=list)  # {path, reason, message}
    # The library's own folder, where it lies under an indexed folder: never indexed.
    library_folder_left_out: str | None = None

    def skip(self, path: str, reason: str, message: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        self.skipped_files.append({"path": path, "reason": reason, "message": message})

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def to_dict(self) -> dict:
        return {**asdict(self), "skipped_total": self.skipped_total}


class IndexInterrupted(Exception):
    """Raised on Ctrl-C after the batch in flight was stored; carries the partial summary."""

    def __init__(self, summary: IndexSummary):
        super().__init__("interrupted")
        self.summary = summary


def index_paths(
    library: Library,
    paths: list[str | os.PathLike[str]],
    *,
    include_hidden: bool = False,
    exclude: list[str] = (),
    batch_size: int = 32,
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = False,
    descriptions: dict[str, str] | None = None,
    ocr: bool | str = False,
    videos: bool = True,
    engine: ray_engine.RayEngine | None = None,
) -> IndexSummary:
    """Bring the library up to date with the image files under ``paths``.

    New and changed files are encoded, files that are gone are removed, files that cannot be
    decoded are recorded with the reason and not retried until they change.

    Args:
        library: an open library.
        paths: folders (walked recursively) and image files.
        include_hidden: also index hidden files and folders (names starting with ".").
        exclude: glob patterns to leave out (matched on relative paths and on names).
        batch_size: images per encoder batch (and per database transaction).
        workers: decoder processes; default one per CPU core, 0 decodes in this process.
        max_pixels: images with more pixels are refused as decompression bombs.
        progress: show a tqdm progress bar on stderr.
        descriptions: image path → a description of it (words for keyword search, see
            :func:`indexer.texts.read_descriptions`); replaces the description of each image
            named, new or unchanged alike (nothing is encoded again for it).
        ocr: read the text in each picture (:mod:`mmsearch.imaging.ocr`), new images as they
            are decoded and stored images that were never read, without encoding them again;
            True for Latin and Chinese text, "ja" for Japanese (Tesseract).
            Without the OCR engine installed, images are indexed without it and the summary's
            ``ocr_problem`` says how to install it.
        videos: index videos too (their moments, :mod:`mmsearch.imaging.video`); without,
            videos are left out like excluded files (and those stored before are removed).
        engine: decode and encode on a Ray cluster (:mod:`indexer.ray_engine`); the library
            is written here, as by a local run.

    Raises:
        InputError: a path does not exist, no image files were found, or an unknown OCR
            language.
        IndexInterrupted: on KeyboardInterrupt, after storing the batch in flight.
        LibraryBusyError: another process is writing to the library.
    """
    language = None if ocr is True else ocr or None
    if language not in LANGUAGES:
        known = "; ".join(f"{k}: {LANGUAGES[k]}" for k in LANGUAGES if k)
        raise InputError(
            f"OCR language {language!r} is not one mmsearch reads ({known}); without a "
            f"language it reads {LANGUAGES[None]}"
        )
    if ocr and not ocr_available(language):
        hint = install_hint(language)
        ocr, problem = False, f"text in the pictures was not read: no OCR engine; {hint}"
    else:
        problem = None
    run = Run(batch_size, workers, max_pixels, progress, ocr, videos, engine)
    started_ray = ray_engine.connect(engine) if engine is not None else False
    try:
        with library.writing():
            summary = _index(library, paths, include_hidden, exclude, run)
            summary.ocr_problem = summary.ocr_problem or problem
            if descriptions:
                summary.described = library.images.set_texts("description", descriptions)
            return summary
    finally:
        if started_ray:
            ray_engine.shutdown()


@dataclass(frozen=True)
class Run:
    """How an index run decodes: see index_paths."""

    batch_size: int
    workers: int | None
    max_pixels: int
    progress: bool
    ocr: bool | str
    videos: bool = True
    engine: ray_engine.RayEngine | None = (
        None  # decode and encode on a Ray cluster (indexer.ray_engine)
    )


def _index(library, paths, include_hidden, exclude, run: Run):
    for given in paths:
        if not os.path.lexists(given):
            _refuse_to_empty(library, given, "is not found")
    never = [library.library_dir]
    found = discover(paths, include_hidden=include_hidden, exclude=exclude, never=never,
                     videos=run.videos)  # fmt: skip
    for root in found.roots:
        seen = itertools.chain((f.path for f in found.files), (p for p, _, _ in found.problems))
        if not any(is_at_or_under(p, [root]) for p in seen):
            _refuse_to_empty(library, root, "holds no image files now")
    library.images.add_indexed_roots(paths)
    # Everything stored under the given paths (folders and single files) is compared with disk.
    stored = library.images.image_state(under=[os.path.abspath(p) for p in paths])
    if not found.files and not found.problems and not stored:
        where = ", ".join(str(p) for p in paths)
        videos = f", videos ({', '.join(sorted(VIDEO_EXTENSIONS))})" if run.videos else ""
        raise InputError(
            f"no image{' or video' if run.videos else ''} files found in {where} (looked for "
            f"{', '.join(sorted(IMAGE_EXTENSIONS - RAW_EXTENSIONS))}, camera RAW files{videos}"
            f"{'' if include_hidden else '; hidden files skipped, see --include-hidden'})"
        )
    summary = IndexSummary(library_folder_left_out=found.left_out[0] if found.left_out else None)
    for path, reason, message in found.problems:
        summary.skip(path, reason, message)

    skipped_before = library.images.skipped_state()
    todo: list[FoundFile] = []
    inodes = {}  # of unchanged images stored before inodes were kept
    for file in found.files:
        known = stored.get(file.path)
        if known and (known.size, known.mtime_ns) == (file.size, file.mtime_ns):
            summary.unchanged += 1
            if known.inode != file.inode:
                inodes[file.path] = file.inode
            continue
        earlier = skipped_before.get(file.path)
        # A file skipped for want of a decoder is retried: installing one changes the outcome.
        if earlier and earlier[:2] == (file.size, file.mtime_ns) and earlier[2] != "needs-decoder":
            # Known bad and unchanged since: report it again, do not decode it again.
            summary.skip(file.path, earlier[2], f"{earlier[3]} (not retried until it changes)")
            continue
        todo.append(file)

    if inodes:
        library.images.set_inodes(inodes)
    moves = library.images.moved_files(f for f in todo if f.path not in stored)
    if moves:
        library.images.move_images(moves)
        summary.moved = len(moves)
        todo = [f for f in todo if f.path not in moves]
        stored = library.images.image_state(under=[os.path.abspath(p) for p in paths])
    try:
        # Copies that took a stored twin's words but have a sidecar (or whose twin had one).
        sidecar_copies: list[str] = []
        known = _known_content(library, todo, run) if todo else KnownContent()
        _encode_and_store(library, todo, stored, summary, run, known, sidecar_copies)
        encoded = {f.path for f in todo}
        held = [f for f in found.files if f.path in stored and f.path not in encoded]
        _read_words_of_stored(library, held, stored, sidecar_copies, summary, run)
    except KeyboardInterrupt:
        library.flush()
        raise IndexInterrupted(summary) from None

    walked, unlisted = set(found.roots), set(found.unlisted)
    present = {f.path for f in found.files} | {p for p, _, _ in found.problems}
    gone = [
        p
        for p in stored
        if p not in present and _under_any(p, walked) and not _under_any(p, unlisted)
    ]
    summary.removed = library.images.remove_images(gone)
    library.images.forget_skipped(
        p for p in skipped_before if _under_any(p, walked) and p not in present
    )
    library.flush()
    return summary


def _read_words_of_stored(library, held, stored, sidecar_copies, summary, run: Run) -> None:
    """The words (metadata, OCR) of stored files that were not encoded again, where they were
    never read, or their sidecar changed, or a schema upgrade asks for every header again."""
    # An unchanged picture whose sidecar changed (or came, or went): its metadata again.
    edited = [f.path for f in held if stored[f.path].sidecar_mtime_ns != f.sidecar_mtime_ns]
    held = [f.path for f in held]
    outdated = library.images.headers_outdated()  # a schema upgrade: read every header
    again = [*(held if outdated else edited), *sidecar_copies]
    summary.metadata_read = read_unread_words(library, held, "metadata", summary, run, again)
    if outdated:
        library.images.headers_read()
    if run.ocr:
        pictures = [p for p in held if not is_video_path(p)]  # OCR reads no video yet
        summary.ocr_read += read_unread_words(library, pictures, "ocr", summary, run)


def _refuse_to_empty(library, path, what: str) -> None:
    """Stop before removing every image of a folder that has vanished or emptied: most often a
    network share or a disk that is not mounted, and re-encoding its photos would take hours."""
    held = len(library.images.image_state(under=[os.path.abspath(path)]))
    if held:
        raise InputError(
            f"{path} {what}, but the library holds {held} images from it; nothing was changed. "
            "If it is on a disk or network share that is not mounted, mount it and run again; "
            f"if the photos are gone for good, `mmsearch forget {path}` removes them from the "
            "library"
        )


def _under_any(path: str, roots: set[str]) -> bool:
    """Strictly below one of ``roots`` (a root itself is a file given directly, not walked)."""
    return any(is_under(path, root) for root in roots)


def _count_ocr(summary: IndexSummary, decoded: Decoded) -> None:
    if decoded.ocr is not None:
        summary.ocr_read += 1
    elif decoded.ocr_error and summary.ocr_problem is None:
        summary.ocr_problem = decoded.ocr_error


def _shot(source) -> dict:
    """The shot columns (camera, exposure, position, rating) of what was decoded, or of the
    stored copy reused."""
    if isinstance(source, Decoded):
        return source.shot.as_columns()
    return {name: getattr(source, name) for name in SHOT_COLUMNS}


@dataclass(frozen=True)
class Encoded:
    """What the encoder made of a file: its vector and, for a video, its moments (the vector is
    its poster's, the moment nearest to them all)."""

    vector: np.ndarray
    poster_t: float | None = None
    moments: tuple[MomentRecord, ...] = ()


def _encode(encoder, decoded: dict[str, Decoded]) -> dict[str, Encoded]:
    """key → Encoded, for pictures and videos (every moment) in one pass through the encoder
    (those a Ray worker encoded already keep their vectors)."""
    pending = {key: d for key, d in decoded.items() if d.vectors is None}
    vectors = {}
    if pending:
        frames = [d.pixels if d.is_video else d.pixels[None] for d in pending.values()]
        stacked, start = encoder.encode_images(np.concatenate(frames)), 0
        for key, count in zip(pending, (len(f) for f in frames), strict=True):
            vectors[key], start = stacked[start : start + count], start + count
    encoded = {}
    for key, d in decoded.items():
        own = d.vectors if d.vectors is not None else vectors[key]
        if not d.is_video:
            encoded[key] = Encoded(own[0])
            continue
        poster = poster_index(own)
        moments = tuple(MomentRecord(t, v) for t, v in zip(d.moment_times, own, strict=True))
        encoded[key] = Encoded(own[poster], d.moment_times[poster], moments)
    return encoded


def _record(decoded: Decoded, source, file: FoundFile, encoded: Encoded) -> ImageRecord:
    """What is stored of a decoded file; ``source`` is what was decoded for its content (the
    file itself, or a stored image with the same content), ``encoded`` its moments."""
    # The same content has the same EXIF date and metadata; without one, the date is this file's.
    # (A video's is its container's creation time.)
    exif_date = source.taken_at if getattr(source, "taken_from", "file") != "mtime" else None
    texts = [Words("name", name_words(decoded.path))]
    if isinstance(source, Decoded):
        texts += [Words("metadata", source.text)]  # even empty: read, and nothing there
        texts += [source.ocr] if source.ocr is not None else []
    else:
        texts += source.texts  # a stored copy's: its metadata and OCR words
    return ImageRecord(
        path=decoded.path,
        size=file.size,
        mtime_ns=file.mtime_ns,
        width=source.width,
        height=source.height,
        format=source.format,
        content_hash=decoded.content_hash,
        taken_at=exif_date or mtime_iso(file.mtime_ns),
        taken_from=("container" if source.duration_s else "exif") if exif_date else "mtime",
        texts=tuple(texts),
        inode=file.inode,
        sidecar_mtime_ns=source.sidecar_mtime_ns if isinstance(source, Decoded) else None,
        duration_s=source.duration_s,
        poster_t=encoded.poster_t,
        moments=encoded.moments,
        **_shot(source),
    )


def _known_content(library, todo: list[FoundFile], run: Run) -> KnownContent:
    """What the decoders need to recognise copies (see mmsearch.storage.identity): the stored
    hashes, and the sizes worth hashing (those of stored images, and those two files of this
    run share). Stored twins that were never hashed, and are unchanged on disk, are hashed now."""
    sizes = Counter(f.size for f in todo)
    held_sizes = library.images.stored_sizes()
    copy_sizes = held_sizes | {size for size, count in sizes.items() if count > 1}
    candidates = {f.size for f in todo if f.size in held_sizes}
    twins = library.images.unhashed(candidates)
    if twins:
        hash_file = partial(hash_for, algorithm=library.images.hash_algorithm)
        hashes = {}
        for decoded in decode_all(list(twins), hash_file, run.workers, 256, KnownContent()):
            if decoded.content_hash:
                hashes[decoded.path] = (decoded.content_hash, *twins[decoded.path])
        library.images.set_hashes(hashes)
    return library.images.known_content().hashing_only(copy_sizes)


def _encode_and_store(library, todo, stored, summary, run: Run, known, sidecar_copies):
    if not todo:
        return
    encoder = library.encoder
    decode = partial(
        decode_for_model,
        cfg=encoder.preprocess,
        max_pixels=run.max_pixels,
        hash_algorithm=library.images.hash_algorithm,
        ocr=run.ocr,
    )
    by_path = {f.path: f for f in todo}
    bar = progress_bar(len(todo), run.progress)

    def skip(decoded: Decoded) -> None:
        file = by_path[decoded.path]
        library.images.record_skipped(
            decoded.path,
            reason=decoded.reason,
            message=decoded.message,
            size=file.size,
            mtime_ns=file.mtime_ns,
        )
        summary.skip(decoded.path, decoded.reason, decoded.message)
        bar.update(1)

    def store(batch: list[Decoded]) -> None:
        reuse = library.images.images_by_hash({d.content_hash for d in batch if d.content_hash})
        ready = []
        for d in batch:
            if d.known and d.content_hash not in reuse:
                # Its twin left the library during this run (or shared only the first 64 bits of
                # its hash): decode it after all (here, also in a Ray run).
                d = decode(d.path, use_known=False)
                if d.pixels is None:
                    skip(d)
                    continue
            ready.append(d)
        # Each distinct new content is encoded once; the rest take a stored or fresh embedding.
        fresh = {}
        for d in ready:
            if d.content_hash not in reuse:
                fresh.setdefault(d.content_hash or d.path, d)
        vectors = _encode(encoder, fresh)
        records, rows = [], []
        for d in ready:
            key = d.content_hash or d.path
            source, made = reuse.get(key) or (d, vectors[key])
            # A stored copy's vector comes with its poster and moments.
            encoded = made if source is d else Encoded(made, source.poster_t, source.moments)
            records.append(_record(d, source, by_path[d.path], encoded))
            if source is not d and (by_path[d.path].sidecar_mtime_ns or source.sidecar_mtime_ns):
                sidecar_copies.append(d.path)
            _count_ocr(summary, d)
            summary.note_problems(d)
            rows.append(encoded.vector)
            _count(summary, stored.get(d.path), d, records[-1], encoded_here=fresh.get(key) is d)
        if records:
            library.images.put_images(records, np.stack(rows))
        bar.update(len(records))

    batch: list[Decoded] = []
    try:
        for decoded in _decoded(library, [f.path for f in todo], decode, known, run):
            if decoded.reason is not None:
                skip(decoded)
                continue
            batch.append(decoded)
            if len(batch) == run.batch_size:
                store(batch)
                batch = []
        if batch:
            store(batch)
    finally:
        bar.close()


def _decoded(library, paths: list[str], decode, known: KnownContent, run: Run):
    """The files decoded by worker processes here, or decoded and encoded on a Ray cluster."""
    if run.engine is None:
        return decode_all(paths, decode, run.workers, 4 * run.batch_size, known)
    weights = library.model_identity()["weights"]
    return ray_engine.decoded_on_cluster(
        paths, decode, known, library.encoder.spec, weights, run.engine, run.batch_size
    )


def _count(summary: IndexSummary, before, decoded: Decoded, record, *, encoded_here: bool) -> None:
    if (
        before is not None
        and before.content_hash is not None
        and (before.content_hash == decoded.content_hash)
    ):
        summary.unchanged += 1  # touched, not changed
        return
    if before is None:
        summary.added += 1
    else:
        summary.updated += 1
    if not encoded_here:
        summary.reused += 1
    if record.duration_s is not None:
        summary.videos += 1
        summary.moments += len(record.moments)
