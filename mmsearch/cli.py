"""The ``mmsearch`` command. Each command parses options, calls one library function, prints.

Errors a user can cause (:class:`~mmsearch.errors.MMSearchError`) print ``Error: <message>`` to
stderr and exit 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from mmsearch.errors import InputError, MMSearchError

app = typer.Typer(
    name="mmsearch",
    help="Local-first multimodal semantic search: index photos and captions, search across them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

LibraryOpt = Annotated[
    Path | None,
    typer.Option(
        "--library",
        "-L",
        help="Library folder [default: $MMSEARCH_LIBRARY, else the user data dir].",
        show_default=False,
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Preset (see `mmsearch models`), ARCH:TAG, ARCH:CHECKPOINT or a model folder "
        "[default: the library's model; vit-b-32-256 for a new library].",
        show_default=False,
    ),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option(
        "--device", help="cpu or cuda [default: cuda when available].", show_default=False
    ),
]
DbUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--db-url",
        help="SQLAlchemy database URL instead of library.db in the library folder.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
TopK = Annotated[int, typer.Option("-k", "--top", min=1, help="How many results.")]
PathsOnlyOpt = Annotated[bool, typer.Option("--paths-only", help="Print paths only.")]
# Filters and relevance, shared by `search` and `similar`.
InOpt = Annotated[
    list[Path] | None,
    typer.Option("--in", help="Only images under this folder (repeatable).", show_default=False),
]
FromOpt = Annotated[
    str | None, typer.Option("--from", help="Taken on or after: YYYY, YYYY-MM or YYYY-MM-DD.")
]
ToOpt = Annotated[
    str | None, typer.Option("--to", help="Taken on or before (the whole day, month or year).")
]
MinWidthOpt = Annotated[int | None, typer.Option(min=1, help="At least this many pixels wide.")]
MinHeightOpt = Annotated[int | None, typer.Option(min=1, help="At least this many pixels high.")]
OrientationOpt = Annotated[
    str | None, typer.Option(help="landscape, portrait or square.", show_default=False)
]
TypeOpt = Annotated[
    list[str] | None,
    typer.Option("--type", help="Only this file type, e.g. jpeg (repeatable).", show_default=False),
]
WithinOpt = Annotated[
    float | None,
    typer.Option(min=0, help="Keep results within this score margin of the best one."),
]
ExactOpt = Annotated[
    bool,
    typer.Option(
        "--exact",
        help="Compare with every item, even where a large library's index is approximate.",
    ),
]
KneeOpt = Annotated[
    bool, typer.Option("--knee", help="Cut the results at the largest drop in score.")
]
DedupOpt = Annotated[bool, typer.Option("--dedup", help="Collapse near-identical results.")]
DedupThresholdOpt = Annotated[
    float, typer.Option(min=0.01, max=1.0, help="Cosine similarity that counts as near-identical.")
]
SortOpt = Annotated[str, typer.Option(help="Order of the results: score or date.")]
HtmlOpt = Annotated[
    Path | None,
    typer.Option("--html", help="Also write a contact sheet (one HTML file).", show_default=False),
]
OpenOpt = Annotated[
    bool, typer.Option("--open", help="Open the results (a contact sheet) in the system viewer.")
]


def command(func):
    """Map user errors to the CLI contract: ``Error: ...`` on stderr, exit status 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except MMSearchError as exc:
            typer.echo(f"Error: {exc}", err=True)
            raise typer.Exit(1) from None
        except Exception as exc:
            if not _is_database_error(exc):
                raise
            typer.echo(
                f"Error: the library database cannot be read or written ({exc.orig}); "
                "`mmsearch check` says what is wrong",
                err=True,
            )
            raise typer.Exit(1) from None

    return wrapper


def _is_database_error(exc: Exception) -> bool:
    """A failing or damaged database (SQLAlchemy's DatabaseError), without importing SQLAlchemy
    for commands that never touched it."""
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    return sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.DatabaseError)


def _open(library, model=None, device=None, db_url=None, *, create=False):
    from mmsearch.opening import open_library

    return open_library(library, model=model, device=device, db_url=db_url, create=create)


def _exit_interrupted(what_to_do: str) -> None:
    """Ctrl-C: say what was kept and how to resume; exit 130 as shells expect.

    Call it once everything is saved and closed: it ends the process at once. A plain exit let
    CPython kill itself with SIGINT instead (exit -2, about one Ctrl-C in ten during start-up,
    seen with strace): the interrupt, though handled here, had surfaced inside C code that
    CPython then treats as an unhandled KeyboardInterrupt at exit.
    """
    typer.echo(f"Interrupted: {what_to_do}", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def _print_json(data) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _check_output_options(as_json: bool, paths_only: bool) -> None:
    if as_json and paths_only:
        raise MMSearchError("--json and --paths-only cannot be used together; choose one")


def _print_image_hits(hits, as_json: bool, paths_only: bool) -> None:
    _check_output_options(as_json, paths_only)
    if as_json:
        _print_json([{"rank": n, **h.to_dict()} for n, h in enumerate(hits, 1)])
    elif paths_only:
        for hit in hits:
            typer.echo(hit.path)
    else:
        for n, hit in enumerate(hits, 1):
            date = (hit.taken_at or "")[:10] or "-"
            size = f"{hit.width}x{hit.height}"
            more = f"  (+{len(hit.duplicates)} near-identical)" if hit.duplicates else ""
            typer.echo(f"{n:>3}  {hit.score:6.3f}  {date:10}  {size:>11}  {hit.path}{more}")


@app.command()
@command
def index(
    paths: Annotated[list[Path], typer.Argument(help="Folders (walked recursively) and images.")],
    library: LibraryOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    db_url: DbUrlOpt = None,
    include_hidden: Annotated[
        bool, typer.Option("--include-hidden", help="Also index hidden files and folders.")
    ] = False,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Glob of files or folders to leave out (repeatable)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per encoder batch.")] = 32,
    workers: Annotated[
        int | None,
        typer.Option(min=0, help="Decoder processes [default: one per core; 0: none]."),
    ] = None,
    max_megapixels: Annotated[
        float, typer.Option(min=1, help="Refuse larger images (decompression-bomb guard).")
    ] = 179.0,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="List each skipped file and why.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Index image folders: new and changed files are encoded, files that are gone removed."""
    from indexer import IndexInterrupted, index_paths

    # Before torch and FAISS load OpenMP: idle OpenMP threads then sleep instead of spinning on
    # the cores the decoder workers need (clipart-mini on 3,000 PNGs: 107 -> 153 images/s; no
    # change for the default model, whose encoder is the limit). See BENCHMARKS.md.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    stored_before_interrupt = None
    with _open(library, model, device, db_url, create=True) as lib:
        try:
            summary = index_paths(
                lib,
                paths,
                include_hidden=include_hidden,
                exclude=exclude or [],
                batch_size=batch_size,
                workers=workers,
                max_pixels=int(max_megapixels * 1e6),
                progress=not as_json and sys.stderr.isatty(),
            )
        except IndexInterrupted as stop:
            stored_before_interrupt = stop.summary.added + stop.summary.updated
        else:
            lib.prepare_text_queries()  # once per model: later text queries need no torch
    if stored_before_interrupt is not None:  # the library is closed, the workers stopped
        _exit_interrupted(
            f"{stored_before_interrupt} images stored. "
            "Run the same command again to carry on where it stopped."
        )
    if as_json:
        _print_json(summary.to_dict())
        return
    reasons = ", ".join(f"{n} {r}" for r, n in sorted(summary.skipped.items()))
    typer.echo(
        f"added {summary.added}, updated {summary.updated}, removed {summary.removed}, "
        f"unchanged {summary.unchanged}, skipped {summary.skipped_total}"
        + (f" ({reasons})" if reasons else "")
    )
    if summary.reused:
        typer.echo(
            f"{summary.reused} of the added and updated files reused a stored embedding "
            "(moved, renamed or duplicate files: not encoded again)"
        )
    if verbose:
        for item in summary.skipped_files:
            typer.echo(f"skipped [{item['reason']}] {item['message']}")
    elif summary.skipped_total:
        typer.echo("(--verbose lists the skipped files)")


@app.command("add-texts")
@command
def add_texts(
    file: Annotated[Path, typer.Argument(help="A .txt (one per line), .jsonl or .csv file.")],
    collection: Annotated[
        str | None, typer.Option(help="Collection name [default: the file name's stem].")
    ] = None,
    replace: Annotated[bool, typer.Option(help="Replace the collection if it exists.")] = False,
    format: Annotated[
        str | None, typer.Option(help="txt, jsonl or csv [default: from the extension].")
    ] = None,
    text_field: Annotated[str, typer.Option(help="JSONL field / CSV column of the text.")] = "text",
    id_field: Annotated[str, typer.Option(help="JSONL field / CSV column of an id.")] = "id",
    library: LibraryOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    db_url: DbUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a caption or text collection, searched by `mmsearch captions`."""
    from indexer import read_text_file

    parsed = read_text_file(file, format=format, text_field=text_field, id_field=id_field)
    name = collection or file.stem
    with _open(library, model, device, db_url, create=True) as lib:
        added = lib.add_texts(name, parsed.records, replace=replace, source=str(file.resolve()))
    if as_json:
        bad = [{"line": n, "reason": why} for n, why in parsed.bad_rows]
        _print_json({"collection": name, "added": added, "bad_rows": bad})
        return
    for number, why in parsed.bad_rows:
        typer.echo(f"skipped line {number}: {why}", err=True)
    typer.echo(f"added {added} texts to collection {name!r}, skipped {len(parsed.bad_rows)}")


@app.command()
@command
def collections(library: LibraryOpt = None, db_url: DbUrlOpt = None, as_json: JsonOpt = False):
    """List the text collections."""
    with _open(library, db_url=db_url) as lib:
        found = lib.collections()
    if as_json:
        _print_json([c.to_dict() for c in found])
        return
    if not found:
        typer.echo("no collections; add one with: mmsearch add-texts FILE")
    for c in found:
        typer.echo(f"{c.name}\t{c.texts} texts\t{c.source or ''}")


@app.command("remove-collection")
@command
def remove_collection(
    name: Annotated[str, typer.Argument(help="The collection to delete.")],
    library: LibraryOpt = None,
    db_url: DbUrlOpt = None,
) -> None:
    """Delete a text collection."""
    with _open(library, db_url=db_url) as lib:
        removed = lib.remove_collection(name)
    typer.echo(f"removed collection {name!r} ({removed} texts)")


@app.command()
@command
def forget(
    paths: Annotated[
        list[Path], typer.Argument(help="Folders or files, which need not exist any more.")
    ],
    library: LibraryOpt = None,
    db_url: DbUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove the images at or under PATHS from the library (the files are not touched)."""
    with _open(library, db_url=db_url) as lib:
        removed = lib.forget(paths)
    if not removed:
        shown = ", ".join(str(p) for p in paths)
        raise InputError(f"the library holds no images at or under {shown}")
    if as_json:
        _print_json({"removed": removed})
    else:
        typer.echo(f"removed {removed} images from the library (the files are untouched)")


@app.command()
@command
def search(
    query: Annotated[
        str, typer.Argument(help="What to look for, e.g. 'a red bicycle' (or '2:sunset').")
    ],
    plus: Annotated[
        list[str] | None,
        typer.Option(
            "--plus", help="Add a text or image term, optionally weighted: 2:sunset, ./me.jpg."
        ),
    ] = None,
    minus: Annotated[
        list[str] | None,
        typer.Option("--minus", help="Subtract a text or image term (repeatable)."),
    ] = None,
    k: TopK = 10,
    folder: InOpt = None,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    min_width: MinWidthOpt = None,
    min_height: MinHeightOpt = None,
    orientation: OrientationOpt = None,
    file_type: TypeOpt = None,
    within: WithinOpt = None,
    knee: KneeOpt = False,
    dedup: DedupOpt = False,
    dedup_threshold: DedupThresholdOpt = 0.95,
    sort: SortOpt = "score",
    exact: ExactOpt = False,
    library: LibraryOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    db_url: DbUrlOpt = None,
    as_json: JsonOpt = False,
    paths_only: PathsOnlyOpt = False,
    html: HtmlOpt = None,
    open_results: OpenOpt = False,
) -> None:
    """Find images that match a text, or a sum of texts and images (--plus, --minus)."""
    from mmsearch.query import QueryTerm

    _check_output_options(as_json, paths_only)
    terms = [QueryTerm.parse(query)]
    terms += [QueryTerm.parse(t) for t in plus or []]
    terms += [QueryTerm.parse(t, sign=-1.0) for t in minus or []]
    where = _filter(folder, date_from, date_to, min_width, min_height, orientation, file_type)
    relevance = _relevance(within, knee, dedup, dedup_threshold, sort)
    with _open(library, model, device, db_url) as lib:
        hits = lib.search(terms, k=k, where=where, relevance=relevance, exact=exact)
    _print_image_hits(hits, as_json, paths_only)
    _contact_sheet(hits, f"mmsearch: {query}", html, open_results)


def _contact_sheet(hits, title: str, html: Path | None, open_results: bool) -> None:
    """Write the hits' contact sheet (to --html, or a temporary file for --open) and open it."""
    if html is None and not open_results:
        return
    from mmsearch.html_pages import contact_sheet, write_page

    if html is None:
        import tempfile

        html = Path(tempfile.mkstemp(prefix="mmsearch-", suffix=".html")[1])
    write_page(contact_sheet(hits, title), html)
    if open_results:
        typer.launch(str(html), wait=True)  # the viewer forks; no zombie


def _filter(folder, date_from, date_to, min_width, min_height, orientation, file_type):
    from mmsearch.query import ImageFilter

    formats = [f for value in file_type or [] for f in value.split(",") if f.strip()]
    return ImageFilter(
        folders=tuple(str(f) for f in folder or []),
        date_from=date_from,
        date_to=date_to,
        min_width=min_width,
        min_height=min_height,
        orientation=orientation,
        formats=tuple(formats),
    )


def _relevance(within, knee, dedup, dedup_threshold, sort):
    from mmsearch.query import Relevance

    return Relevance(within=within, knee=knee, dedup=dedup_threshold if dedup else None, sort=sort)


@app.command()
@command
def similar(
    image: Annotated[Path, typer.Argument(help="An image file, in the library or not.")],
    k: TopK = 10,
    folder: InOpt = None,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    min_width: MinWidthOpt = None,
    min_height: MinHeightOpt = None,
    orientation: OrientationOpt = None,
    file_type: TypeOpt = None,
    within: WithinOpt = None,
    knee: KneeOpt = False,
    dedup: DedupOpt = False,
    dedup_threshold: DedupThresholdOpt = 0.95,
    sort: SortOpt = "score",
    exact: ExactOpt = False,
    library: LibraryOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    db_url: DbUrlOpt = None,
    as_json: JsonOpt = False,
    paths_only: PathsOnlyOpt = False,
    html: HtmlOpt = None,
    open_results: OpenOpt = False,
) -> None:
    """Find images that look like an image (the image itself is left out)."""
    _check_output_options(as_json, paths_only)
    where = _filter(folder, date_from, date_to, min_width, min_height, orientation, file_type)
    relevance = _relevance(within, knee, dedup, dedup_threshold, sort)
    with _open(library, model, device, db_url) as lib:
        hits = lib.similar(image, k=k, where=where, relevance=relevance, exact=exact)
    _print_image_hits(hits, as_json, paths_only)
    _contact_sheet(hits, f"mmsearch: like {image}", html, open_results)


@app.command()
@command
def captions(
    image: Annotated[Path, typer.Argument(help="An image file, in the library or not.")],
    k: TopK = 5,
    collection: Annotated[str | None, typer.Option(help="Only texts of this collection.")] = None,
    keep_duplicates: Annotated[
        bool,
        typer.Option("--keep-duplicates", help="List a text each time it occurs, not once."),
    ] = False,
    exact: ExactOpt = False,
    library: LibraryOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    db_url: DbUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Find the texts (captions) that best describe an image."""
    with _open(library, model, device, db_url) as lib:
        hits = lib.captions(
            image, k=k, collection=collection, distinct=not keep_duplicates, exact=exact
        )
    if as_json:
        _print_json([{"rank": n, **h.to_dict()} for n, h in enumerate(hits, 1)])
        return
    for n, hit in enumerate(hits, 1):
        typer.echo(f"{n:>3}  {hit.score:6.3f}  [{hit.collection}]  {hit.text}")


@app.command()
@command
def duplicates(
    threshold: Annotated[
        float,
        typer.Option(min=0.01, max=1.0, help="Cosine similarity that counts as near-identical."),
    ] = 0.95,
    library: LibraryOpt = None,
    db_url: DbUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List groups of near-identical images in the library."""
    with _open(library, db_url=db_url) as lib:
        groups = lib.duplicates(threshold)
    if as_json:
        _print_json([g.to_dict() for g in groups])
        return
    for number, group in enumerate(groups, 1):
        typer.echo(f"group {number}: {len(group.paths)} images, similarity ≥ {group.min_score}")
        for path in group.paths:
            typer.echo(f"  {path}")
    if not groups:
        typer.echo(f"no near-identical images at similarity ≥ {threshold}")


@app.command()
@command
def tag(
    images: Annotated[list[Path], typer.Argument(help="Image files to label.")],
    labels: Annotated[
        str | None, typer.Option(help="Comma-separated labels, e.g. 'cat,dog,car'.")
    ] = None,
    labels_file: Annotated[
        Path | None, typer.Option(help="A file with one label per line.", show_default=False)
    ] = None,
    template: Annotated[
        list[str] | None,
        typer.Option(
            help="Prompt with {} for the label (repeatable: averaged) [default: 'a photo of a {}.']"
        ),
    ] = None,
    top: Annotated[int, typer.Option(min=1, help="Labels shown per image.")] = 3,
    library: LibraryOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Zero-shot tagging: how likely each label is for each image (no library needed)."""
    names = _read_labels(labels, labels_file)
    templates = template or ["a photo of a {}."]
    with _open_for_queries(library, model, device) as lib:
        results = lib.tag(images, names, templates=templates)
    if as_json:
        _print_json(
            [
                {
                    "image": str(image),
                    "labels": [{"label": k, "probability": v} for k, v in r.items()],
                }
                for image, r in zip(images, results, strict=True)
            ]
        )
        return
    for image, result in zip(images, results, strict=True):
        best = ", ".join(f"{label} {p:.0%}" for label, p in list(result.items())[:top])
        typer.echo(f"{image}: {best}")


def _read_labels(labels: str | None, labels_file: Path | None) -> list[str]:
    if (labels is None) == (labels_file is None):
        raise MMSearchError("give the labels with either --labels or --labels-file")
    if labels_file is not None:
        from indexer.texts import read_text_file

        return [r.text for r in read_text_file(labels_file).records]
    return [label.strip() for label in labels.split(",") if label.strip()]


@contextlib.contextmanager
def _open_for_queries(library, model, device):
    """The library when there is one; otherwise a throwaway one in memory, for its encoder."""
    import tempfile

    from mmsearch.errors import LibraryError
    from mmsearch.opening import open_library

    try:
        lib = open_library(library, model=model, device=device, create=False)
    except LibraryError:
        if library is not None:
            raise
        lib = None
    if lib is not None:
        with lib:
            yield lib
        return
    with (
        tempfile.TemporaryDirectory(prefix="mmsearch-") as folder,
        open_library(folder, model=model, device=device, db_url="sqlite://") as lib,
    ):
        yield lib


@app.command("map")
@command
def map_library(
    html: Annotated[Path, typer.Option("--html", help="The HTML file to write.")],
    max_images: Annotated[int, typer.Option(min=2, help="Images drawn (evenly sampled).")] = 1000,
    open_map: OpenOpt = False,
    library: LibraryOpt = None,
    db_url: DbUrlOpt = None,
) -> None:
    """Draw the library's images on a 2-D map of their embeddings (PCA), as one HTML file."""
    from mmsearch.html_pages import library_map, write_page

    with _open(library, db_url=db_url) as lib:
        points = lib.map_points(max_images)
        title = f"mmsearch map of {lib.library_dir} ({len(points)} images)"
    write_page(library_map(points, title), html)
    typer.echo(f"wrote {html} ({len(points)} images)")
    if open_map:
        typer.launch(str(html), wait=True)  # the viewer forks; no zombie


@app.command()
@command
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free one).")] = 8765,
    max_upload_mb: Annotated[
        float, typer.Option(min=0.1, help="Largest query image accepted by upload.")
    ] = 20.0,
    library: LibraryOpt = None,
    device: DeviceOpt = None,
    db_url: DbUrlOpt = None,
) -> None:
    """Serve a web app and JSON API for the library (Ctrl-C stops it)."""
    try:
        from mmsearch import server
    except ImportError as exc:
        raise MMSearchError(
            f"mmsearch serve needs the web extra ({exc.name} is missing): "
            "pip install 'mmsearch[web]'"
        ) from exc
    with _open(library, device=device, db_url=db_url) as lib:
        lib.encoder.encode_texts(["warm up"])  # load the model now, not on the first request

        def ready(url: str) -> None:
            typer.echo(f"serving {lib.library_dir} on {url} (Ctrl-C stops)")
            sys.stdout.flush()

        server.serve(lib, host, port, on_ready=ready, max_upload_bytes=int(max_upload_mb * 2**20))


@app.command()
@command
def check(
    library: LibraryOpt = None,
    db_url: DbUrlOpt = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Rebuild what is derived: indexes, damaged vectors.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Verify the library: database, model, vectors and indexes. Exit 1 if anything is wrong."""
    from mmsearch.checking import check_library, damaged_database, repair_library
    from mmsearch.location import resolve_library_dir

    repaired, where, counts = [], resolve_library_dir(library), ""
    try:
        with _open(library, db_url=db_url) as lib:
            problems = check_library(lib)
            if repair and any(p.repairable for p in problems):
                repaired = repair_library(lib, problems)
                problems = check_library(lib)
            if not problems:
                details = lib.info()
                counts = f"{details.images} images, {details.texts} texts"
    except Exception as exc:
        if not _is_database_error(exc):
            raise
        problems = [damaged_database(str(exc.orig))]
    if as_json:
        _print_json(
            {
                "library": str(where),
                "ok": not problems,
                "repaired": repaired,
                "problems": [p.to_dict() for p in problems],
            }
        )
    else:
        for line in repaired:
            typer.echo(f"repaired: {line}")
        for problem in problems:
            hint = " [mmsearch check --repair fixes this]" if problem.repairable else ""
            typer.echo(f"problem [{problem.part}]: {problem.message}{hint}")
        if not problems:
            typer.echo(
                f"ok: library {where} is consistent ({counts}; database, model, vectors and "
                "indexes checked)"
            )
    if problems:
        raise typer.Exit(1)


@app.command()
@command
def info(library: LibraryOpt = None, db_url: DbUrlOpt = None, as_json: JsonOpt = False) -> None:
    """Show what the library holds and where it lives."""
    with _open(library, db_url=db_url) as lib:
        details = lib.info()
    if as_json:
        _print_json(details.to_dict())
        return
    model = details.model or {}
    typer.echo(f"library:     {details.library_dir}")
    typer.echo(f"database:    {details.database}")
    if details.database_bytes is not None:
        typer.echo(f"             {details.database_bytes / 1e6:.1f} MB")
    typer.echo(f"model:       {model.get('model', 'none yet')} (dim {model.get('dim', '-')})")
    skipped = f"{details.skipped_files} file{'' if details.skipped_files == 1 else 's'} skipped"
    typer.echo(f"images:      {details.images} ({skipped})")
    typer.echo(f"texts:       {details.texts} in {len(details.collections)} collection(s)")
    for c in details.collections:
        typer.echo(f"  {c.name}: {c.texts}")
    for f in details.index_files:
        state = "current" if f.current else "stale, rebuilt on next query"
        typer.echo(f"index:       {f.path} ({f.vectors} vectors, {f.bytes / 1e6:.1f} MB, {state})")


@app.command()
@command
def models(as_json: JsonOpt = False) -> None:
    """List the model presets."""
    from mmsearch.models import DEFAULT_MODEL, list_models

    specs = list_models()
    if as_json:
        _print_json(
            [
                {
                    "name": s.name,
                    "arch": s.arch,
                    "pretrained": s.pretrained,
                    "dim": s.dim,
                    "imagenet_zero_shot": s.imagenet_zero_shot,
                    "description": s.description,
                    "default": s.name == DEFAULT_MODEL,
                }
                for s in specs
            ]
        )
        return
    for s in specs:
        mark = "*" if s.name == DEFAULT_MODEL else " "
        typer.echo(f"{mark} {s.name:<18} {s.description}")


@app.command()
@command
def train(
    captions_file: Annotated[
        Path, typer.Argument(help="JSONL of {image, caption | captions}; paths relative to it.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")],
    arch: Annotated[
        str, typer.Option(help="open_clip architecture (ours: mmsearch-tiny, clipart-mini).")
    ] = "clipart-mini",
    init: Annotated[
        str | None, typer.Option(help="Fine-tune this --model value instead of starting afresh.")
    ] = None,
    val: Annotated[
        Path | None, typer.Option(help="Held-out captions file scored after each epoch.")
    ] = None,
    val_every: Annotated[int, typer.Option(min=1, help="Score --val every N epochs.")] = 1,
    epochs: Annotated[int, typer.Option(min=1)] = 30,
    batch_size: Annotated[int, typer.Option(min=2)] = 128,
    lr: Annotated[float, typer.Option(min=0)] = 1e-3,
    warmup: Annotated[int, typer.Option(min=0, help="Warm-up steps.")] = 100,
    seed: int = 0,
    precision: Annotated[
        str,
        typer.Option(
            help="auto (bf16 on CPUs with native bf16, else fp32), fp32 or bf16 (bf16 autocast; "
            "weights stay fp32)."
        ),
    ] = "auto",
    images_root: Annotated[
        Path | None, typer.Option(help="Folder the image paths are relative to.")
    ] = None,
    skip_missing: Annotated[
        bool, typer.Option(help="Leave out rows whose image does not exist.")
    ] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue from OUTPUT/checkpoint.pt when present.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Train (or fine-tune) a CLIP model on captioned images; the folder works as --model."""
    from mmsearch.trainer import train_from_files
    from mmsearch.training import TrainConfig

    config = TrainConfig(
        arch=arch,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=warmup,
        seed=seed,
        init=init,
        precision=precision,
    )
    try:
        result = train_from_files(
            captions_file,
            output,
            config,
            val_file=val,
            images_root=str(images_root) if images_root else None,
            skip_missing=skip_missing,
            progress=sys.stderr.isatty(),
            resume=resume,
            validate_every=val_every,
            log=lambda line: typer.echo(line, err=True),
        )
    except KeyboardInterrupt:
        _exit_interrupted(
            f"the last finished epoch is saved in {output}/checkpoint.pt; "
            "run the same command again to resume."
        )
    if as_json:
        _print_json(result.__dict__)
        return
    typer.echo(
        f"trained {result.epochs} epochs ({result.steps} steps) in {result.seconds:.0f} s, "
        f"final loss {result.final_loss:.3f}; use it with --model {output}"
    )


@app.command("eval")
@command
def evaluate(
    captions_file: Annotated[Path, typer.Argument(help="JSONL of {image, caption}.")],
    model: ModelOpt = None,
    device: DeviceOpt = None,
    images_root: Annotated[
        Path | None, typer.Option(help="Folder the image paths are relative to.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Score a model: text→image and image→text Recall@1/5/10 and median rank."""
    from mmsearch.encoder import OpenClipEncoder
    from mmsearch.models import DEFAULT_MODEL, resolve_model
    from mmsearch.trainer import evaluate_file

    encoder = OpenClipEncoder(resolve_model(model or DEFAULT_MODEL), device=device)
    scores = evaluate_file(
        encoder,
        captions_file,
        images_root=str(images_root) if images_root else None,
        on_skip=lambda path, why: typer.echo(f"skipped: {why}", err=True),
    )
    if as_json:
        _print_json(scores.to_dict())
        return
    skipped = f" ({scores.skipped_images} undecodable left out)" if scores.skipped_images else ""
    typer.echo(f"{scores.images} images{skipped}, {scores.captions} distinct captions")
    typer.echo(f"{'direction':<15}{'R@1':>7}{'R@5':>7}{'R@10':>7}{'median rank':>13}")
    for name, row in (
        ("text → image", scores.text_to_image),
        ("image → text", scores.image_to_text),
    ):
        typer.echo(
            f"{name:<15}{row['R@1']:>7.3f}{row['R@5']:>7.3f}{row['R@10']:>7.3f}"
            f"{row['median_rank']:>13.0f}"
        )


def main() -> None:
    # open_clip reports through the root logger ("No pretrained weights loaded", download
    # retries); our own errors say what matters, so keep those lines off the terminal.
    logging.getLogger().setLevel(logging.CRITICAL)
    app()


if __name__ == "__main__":
    main()
