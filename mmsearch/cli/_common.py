"""What every ``mmsearch`` command shares: the Typer app, the common options, the error contract
(:func:`command`) and the ways results are printed."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from mmsearch.errors import MMSearchError
from mmsearch.results import MAX_RESULTS
from mmsearch.timecodes import clock

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
VectorStoreOpt = Annotated[
    str | None,
    typer.Option(
        "--vector-store",
        help="Where a new library's image vectors are searched: pgvector (PostgreSQL "
        "itself; the default on PostgreSQL with the extension) or faiss (files in the "
        "library folder; always on SQLite).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
TopK = Annotated[int, typer.Option("-k", "--top", min=1, max=MAX_RESULTS, help="How many results.")]
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
    typer.Option(
        "--type",
        help="Only this file type, e.g. jpeg or mp4, or kind: image, video (repeatable).",
        show_default=False,
    ),
]
CameraOpt = Annotated[
    str | None,
    typer.Option(
        help="Only pictures from this camera (make or model, e.g. X100V).", show_default=False
    ),
]
LensOpt = Annotated[
    str | None,
    typer.Option(help="Only pictures taken with this lens (e.g. 35mm).", show_default=False),
]
FocalOpt = Annotated[
    str | None,
    typer.Option(help="Focal length in mm, 35 mm equivalent: 35, 20-35, -50.", show_default=False),
]
ApertureOpt = Annotated[
    str | None, typer.Option(help="F-number: 2.8, 1.4-2.8.", show_default=False)
]
ExposureOpt = Annotated[
    str | None,
    typer.Option(
        help="Exposure time in seconds: 1/250, 1/250-1/60, -1/500, 1-.", show_default=False
    ),
]
IsoMaxOpt = Annotated[
    int | None, typer.Option("--iso-max", min=1, help="Only pictures shot at this ISO or lower.")
]
NearOpt = Annotated[
    str | None,
    typer.Option(
        help="Only pictures taken near a town (Lisbon; Lisbon, PT) or a position (38.72,-9.14).",
        show_default=False,
    ),
]
RadiusOpt = Annotated[
    str | None,
    typer.Option(help="How near, with --near: 5km, 800m, 3mi (default 10km).", show_default=False),
]
CountryOpt = Annotated[
    str | None,
    typer.Option(
        help="Only pictures taken in this country (ISO code: PT, JP).", show_default=False
    ),
]
PlaceOpt = Annotated[
    str | None,
    typer.Option(
        help="Only pictures taken at a place: a town, region or country name (Kyoto).",
        show_default=False,
    ),
]
MinRatingOpt = Annotated[
    int | None,
    typer.Option(min=-1, max=5, help="Only pictures rated this many stars or more (XMP).",
                 show_default=False),
]  # fmt: skip
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
    float | None,
    typer.Option(
        min=0.01,
        max=1.0,
        help="Cosine similarity that counts as near-identical [default: the model's, see "
        "`mmsearch models`].",
        show_default=False,
    ),
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

    return wrapper


def open_library_for(
    library, model=None, device=None, db_url=None, *, create=False, query=False, vector_store=None
):
    """The library for a command; a ``query`` command notes on stderr when it is read-only."""
    from mmsearch.opening import open_library

    lib = open_library(
        library, model=model, device=device, db_url=db_url, create=create, vector_store=vector_store
    )
    if query and lib.read_only:
        typer.echo(
            f"Note: library {lib.library_dir} is read-only: new queries are not cached", err=True
        )
    return lib


def exit_interrupted(what_to_do: str) -> None:
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


def print_json(data) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def check_output_options(as_json: bool, paths_only: bool) -> None:
    if as_json and paths_only:
        raise MMSearchError("--json and --paths-only cannot be used together; choose one")


def print_image_hits(hits, as_json: bool, paths_only: bool) -> None:
    check_output_options(as_json, paths_only)
    if as_json:
        print_json([{"rank": n, **h.to_dict()} for n, h in enumerate(hits, 1)])
    elif paths_only:
        for hit in hits:
            typer.echo(hit.path)
    else:
        for n, hit in enumerate(hits, 1):
            date = (hit.taken_at or "")[:10] or "-"
            date += "*" if hit.taken_from == "mtime" else ""
            size = f"{hit.width}x{hit.height}"
            more = f"  (+{len(hit.duplicates)} near-identical)" if hit.duplicates else ""
            if hit.moments:
                at = ", ".join(clock(t) for t, _ in hit.moments)
                more += f"  at {at} (video, {clock(hit.duration_s)})"
            # A hybrid hit may rank by its words alone, its score (the picture's cosine) low:
            # say so, or the table looks out of order.
            kinds = [kind for kind, _ in hit.matched if kind != "semantic"]
            if kinds:
                more += f"  (words in its {', '.join(kinds)})"
            typer.echo(f"{n:>3}  {hit.score:6.3f}  {date:11}  {size:>11}  {hit.path}{more}")


@contextlib.contextmanager
def open_for_queries(library, model, device):
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
