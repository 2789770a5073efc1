"""Commands that fill a library: ``index``, ``add-texts``, ``collections``, ``remove-collection``,
``forget``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from mmsearch.cli._common import (
    DbUrlOpt,
    DeviceOpt,
    JsonOpt,
    LibraryOpt,
    ModelOpt,
    VectorStoreOpt,
    app,
    command,
    exit_interrupted,
    open_library_for,
    print_json,
)
from mmsearch.errors import InputError, MMSearchError


# Long, as Typer commands are: most of it is the option list in the signature.
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
    descriptions: Annotated[
        Path | None,
        typer.Option(
            "--descriptions",
            help="JSONL of {image, caption | captions} describing images, for keyword search "
            "(paths relative to the file; the train/eval format).",
            show_default=False,
        ),
    ] = None,
    ocr: Annotated[
        bool,
        typer.Option(
            "--ocr",
            help="Read the text in the pictures for keyword search (needs the ocr extra: "
            "pip install 'mmsearch[ocr]').",
        ),
    ] = False,
    ocr_language: Annotated[
        str | None,
        typer.Option(
            "--ocr-language",
            help="Read text in this language instead of Latin and Chinese: ja (Japanese, with "
            "English; needs Tesseract: apt install tesseract-ocr tesseract-ocr-jpn). Implies "
            "--ocr.",
            show_default=False,
        ),
    ] = None,
    videos: Annotated[
        bool,
        typer.Option(
            "--videos/--no-videos",
            help="Index videos too: their moments (a frame per scene), found by search with "
            "their time.",
        ),
    ] = True,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="local, or ray: decode and encode on a Ray cluster (needs the ray extra: "
            "pip install 'mmsearch[ray]'); the library is written here either way.",
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="The Ray cluster's head (host:port) [default: RAY_ADDRESS, else Ray started "
            "here].",
            show_default=False,
        ),
    ] = None,
    encoders: Annotated[
        int | None,
        typer.Option(
            "--encoders",
            min=1,
            help="Ray: encoder actors, each loading the model once [default: one per GPU "
            "worker, else 1].",
            show_default=False,
        ),
    ] = None,
    gpus_per_worker: Annotated[
        float | None,
        typer.Option(
            "--gpus-per-worker",
            min=0,
            help="Ray: GPUs each encoder actor takes [default: 1 where the cluster has GPUs].",
            show_default=False,
        ),
    ] = None,
    vector_store: VectorStoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Index photo and video folders: new and changed files are encoded, files that are gone
    removed."""
    from indexer import IndexInterrupted, index_paths
    from indexer.texts import read_descriptions

    described = read_descriptions(descriptions) if descriptions else None
    cluster = _cluster_engine(engine, ray_address, encoders, gpus_per_worker)

    from mmsearch.opening import discard_if_never_used, library_exists

    stored_before_interrupt = None
    existed = library_exists(library)
    with open_library_for(
        library, model, device, db_url, create=True, vector_store=vector_store
    ) as lib:
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
                descriptions=described,
                ocr=ocr_language or ocr,
                videos=videos,
                engine=cluster,
            )
        except IndexInterrupted as stop:
            stored_before_interrupt = stop.summary.added + stop.summary.updated
        except MMSearchError:
            discard_if_never_used(lib, existed=existed or bool(db_url))
            raise
        else:
            lib.prepare_text_queries()  # once per model: later text queries need no torch
    if stored_before_interrupt is not None:  # the library is closed, the workers stopped
        exit_interrupted(
            f"{stored_before_interrupt} images stored. "
            "Run the same command again to carry on where it stopped."
        )
    if as_json:
        print_json(summary.to_dict())
        return
    _print_summary(summary, verbose)


def _cluster_engine(engine: str, address: str | None, encoders, gpus_per_worker):
    """The Ray engine for ``--engine ray`` (None for a local run), its options checked."""
    if engine not in ("local", "ray"):
        raise MMSearchError(f"--engine {engine!r}: use local or ray")
    if engine == "local":
        if address or encoders or gpus_per_worker is not None:
            raise MMSearchError(
                "--ray-address, --encoders and --gpus-per-worker go with --engine ray"
            )
        return None
    from indexer import RayEngine

    return RayEngine(address or os.environ.get("RAY_ADDRESS"), encoders, gpus_per_worker)


def _print_summary(summary, verbose: bool) -> None:
    """The index run's summary, one line per kind of thing that happened."""
    reasons = ", ".join(f"{n} {r}" for r, n in sorted(summary.skipped.items()))
    typer.echo(
        f"added {summary.added}, updated {summary.updated}, removed {summary.removed}, "
        f"unchanged {summary.unchanged}, skipped {summary.skipped_total}"
        + (f" ({reasons})" if reasons else "")
    )
    if summary.videos:
        typer.echo(
            f"{summary.videos} of the added and updated files are videos: {summary.moments} "
            "moments stored (a frame per scene)"
        )
    if summary.moved:
        typer.echo(
            f"{summary.moved} files moved or renamed on the same disk: recognised by their "
            "inode, size and time, nothing read"
        )
    if summary.reused:
        typer.echo(
            f"{summary.reused} of the added and updated files reused a stored embedding "
            "(copies, or files moved across disks: recognised by their hash, not encoded again)"
        )
    if summary.metadata_read:
        typer.echo(f"metadata read for {summary.metadata_read} images already stored")
    if summary.ocr_read:
        typer.echo(f"text read in {summary.ocr_read} pictures (--ocr)")
    if summary.ocr_problem:
        typer.echo(f"OCR: {summary.ocr_problem}", err=True)
    if summary.described:
        typer.echo(f"{summary.described} images described (--descriptions)")
    if summary.library_folder_left_out:
        typer.echo(
            f"the library folder {summary.library_folder_left_out} lies inside an indexed "
            "folder; its files (thumbnails, index files) are never indexed"
        )
    if verbose:
        for item in summary.skipped_files:
            typer.echo(f"skipped [{item['reason']}] {item['message']}")
        for item in summary.metadata_problems:
            typer.echo(f"metadata of {item['path']}: {item['message']}")
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
    with open_library_for(library, model, device, db_url, create=True) as lib:
        added = lib.add_texts(name, parsed.records, replace=replace, source=str(file.resolve()))
    if as_json:
        bad = [{"line": n, "reason": why} for n, why in parsed.bad_rows]
        print_json({"collection": name, "added": added, "bad_rows": bad})
        return
    for number, why in parsed.bad_rows:
        typer.echo(f"skipped line {number}: {why}", err=True)
    typer.echo(f"added {added} texts to collection {name!r}, skipped {len(parsed.bad_rows)}")


@app.command()
@command
def collections(library: LibraryOpt = None, db_url: DbUrlOpt = None, as_json: JsonOpt = False):
    """List the text collections."""
    with open_library_for(library, db_url=db_url) as lib:
        found = lib.collections()
    if as_json:
        print_json([c.to_dict() for c in found])
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
    with open_library_for(library, db_url=db_url) as lib:
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
    with open_library_for(library, db_url=db_url) as lib:
        removed = lib.forget(paths)
    if not removed:
        shown = ", ".join(str(p) for p in paths)
        raise InputError(f"the library holds no images at or under {shown}")
    if as_json:
        print_json({"removed": removed})
    else:
        typer.echo(f"removed {removed} images from the library (the files are untouched)")


@app.command("export-embeddings")
@command
def export_embeddings(
    parquet: Annotated[
        Path, typer.Option("--parquet", help="The folder of Parquet shards to write.")
    ],
    shard_rows: Annotated[int, typer.Option(min=1, help="Images per shard.")] = 100_000,
    library: LibraryOpt = None,
    db_url: DbUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the library's images and vectors as Parquet shards (run again to carry on)."""
    from indexer.embeddings import export_embeddings as export

    with open_library_for(library, db_url=db_url) as lib:
        done = export(lib, parquet, shard_rows=shard_rows)
    if as_json:
        print_json(done.to_dict())
        return
    kept = f" ({done.skipped_shards} shards of an earlier run kept)" if done.skipped_shards else ""
    typer.echo(f"exported {done.rows} images in {done.shards} shards to {parquet}{kept}")


@app.command("import-embeddings")
@command
def import_embeddings(
    folder: Annotated[Path, typer.Argument(help="A folder of Parquet shards (export-embeddings).")],
    remap: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="OLD=NEW: paths under OLD are stored under NEW (the photos moved); repeatable.",
            show_default=False,
        ),
    ] = None,
    library: LibraryOpt = None,
    model: ModelOpt = None,
    db_url: DbUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Store images and vectors from Parquet shards (another library's, or a batch job's)."""
    from indexer.embeddings import import_embeddings as load

    pairs = []
    for value in remap or []:
        old, equals, new = value.partition("=")
        if not equals or not old or not new:
            raise MMSearchError(f"--map {value!r}: write OLD=NEW, e.g. /mnt/nas=/home/me/photos")
        pairs.append((os.path.abspath(old), os.path.abspath(new)))
    with open_library_for(library, model, None, db_url, create=True) as lib:
        done = load(lib, folder, remap=pairs)
    if as_json:
        print_json(done.to_dict())
        return
    typer.echo(
        f"imported {done.rows} images from {done.shards} shards; `mmsearch index` on their "
        "folders then reads their metadata, without encoding them again"
    )
