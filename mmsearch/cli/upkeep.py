"""Commands that look after a library and say what it holds: ``check``, ``info``, ``places``,
``migrate``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mmsearch.cli._common import (
    DbUrlOpt,
    JsonOpt,
    LibraryOpt,
    VectorStoreOpt,
    app,
    command,
    exit_interrupted,
    open_library_for,
    print_json,
)
from mmsearch.errors import DatabaseError, InputError


@app.command()
@command
def check(
    library: LibraryOpt = None,
    db_url: DbUrlOpt = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Rebuild what is derived: indexes, damaged vectors.")
    ] = False,
    files: Annotated[
        bool,
        typer.Option(
            "--files", help="Also read every image file with a stored hash, to prove it (slow)."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Verify the library: database, model, vectors and indexes. Exit 1 if anything is wrong."""
    from mmsearch.checking import check_library, damaged_database, repair_library
    from mmsearch.storage.location import resolve_library_dir

    repaired, where, counts = [], resolve_library_dir(library), ""
    try:
        with open_library_for(library, db_url=db_url) as lib:
            problems = check_library(lib, files=files)
            if repair and any(p.repairable for p in problems):
                repaired = repair_library(lib, problems)
                problems = check_library(lib, files=files)
            if not problems:
                details = lib.info()
                counts = f"{details.images} images, {details.texts} texts"
                counts += "; read-only" if details.read_only else ""
    except DatabaseError as exc:
        problems = [damaged_database(str(exc.orig))]
    if as_json:
        print_json(
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
    with open_library_for(library, db_url=db_url) as lib:
        details = lib.info()
    if as_json:
        print_json(details.to_dict())
        return
    model = details.model or {}
    typer.echo(f"library:     {details.library_dir}")
    typer.echo(f"database:    {details.database}{' (read-only)' if details.read_only else ''}")
    if details.database_bytes is not None:
        typer.echo(f"             {details.database_bytes / 1e6:.1f} MB")
    typer.echo(f"model:       {model.get('model', 'none yet')} (dim {model.get('dim', '-')})")
    if details.vector_store == "pgvector":
        index = details.vector_index or "no index yet"
        typer.echo(
            f"vectors:     images searched by PostgreSQL (pgvector, {index}); texts by FAISS"
        )
    else:
        typer.echo("vectors:     searched by FAISS, in index files in the library folder")
    skipped = f"{details.skipped_files} file{'' if details.skipped_files == 1 else 's'} skipped"
    typer.echo(f"images:      {details.images} ({skipped})")
    if details.videos:
        hours = f"{details.video_hours:.1f} hours" if details.video_hours >= 1 else (
            f"{details.video_hours * 60:.1f} minutes")  # fmt: skip
        typer.echo(f"videos:      {details.videos} of them, {details.moments} moments, {hours}")
    typer.echo(f"texts:       {details.texts} in {len(details.collections)} collection(s)")
    for c in details.collections:
        typer.echo(f"  {c.name}: {c.texts}")
    for f in details.index_files:
        state = "current" if f.current else "stale, rebuilt on next query"
        typer.echo(f"index:       {f.path} ({f.vectors} vectors, {f.bytes / 1e6:.1f} MB, {state})")


@app.command()
@command
def places(library: LibraryOpt = None, db_url: DbUrlOpt = None, as_json: JsonOpt = False) -> None:
    """List where the library's photos were taken (from their GPS positions), with counts."""
    with open_library_for(library, db_url=db_url) as lib:
        found = lib.places()
    if as_json:
        print_json([p._asdict() for p in found])
        return
    if not found:
        typer.echo("No image in the library has a GPS position.")
        return
    for p in found:
        where = ", ".join(n for n in (p.city, p.region, p.country) if n)
        typer.echo(f"{p.images:>7}  {where or 'far from any town (at sea, in the wild)'}")


@app.command()
@command
def migrate(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="The new library: a folder (SQLite), or a database URL such as "
            "postgresql+psycopg://user@host/photos, with --to-library for its folder.",
            show_default=False,
        ),
    ],
    to_library: Annotated[
        Path | None,
        typer.Option(
            "--to-library",
            help="With a database URL: the new library's folder (its library.json, and any "
            "index files).",
            show_default=False,
        ),
    ] = None,
    vector_store: VectorStoreOpt = None,
    library: LibraryOpt = None,
    db_url: DbUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy the library into another database, SQLite or PostgreSQL, and check the copy.
    The source is not changed; an interrupted copy carries on when run again."""
    from mmsearch.migration import migrate as copy_library
    from mmsearch.migration import pending_rows
    from mmsearch.opening import open_library

    url = to if "://" in to else None
    if url and to_library is None:
        raise InputError("--to with a database URL needs --to-library: the new library's folder")
    if not url and to_library is not None:
        raise InputError("--to-library goes with a database URL in --to; --to FOLDER is enough")
    target_dir = to_library if url else Path(to)
    with (
        open_library_for(library, db_url=db_url) as source,
        open_library(target_dir, db_url=url, vector_store=vector_store) as target,
    ):
        from tqdm import tqdm

        total = pending_rows(source, target)
        shown = not as_json and sys.stderr.isatty()
        with tqdm(total=total, unit="row", desc="Copying", disable=not shown, leave=False) as bar:
            try:
                summary = copy_library(source, target, progress=bar.update)
            except KeyboardInterrupt:
                interrupted = True
            else:
                interrupted = False
    if interrupted:
        exit_interrupted("what was copied is kept; run the same command again to carry on.")
    if as_json:
        print_json({"target": str(target_dir), "ok": not summary.problems, **summary.to_dict()})
    else:
        counts = ", ".join(f"{n} {table}" for table, n in summary.rows.items() if n)
        typer.echo(f"{target_dir} holds {counts or 'nothing'}")
        for problem in summary.problems:
            typer.echo(f"problem: {problem}", err=True)
        if not summary.problems:
            typer.echo(f"checked: consistent; use it with --library {target_dir}")
    if summary.problems:
        raise typer.Exit(1)
