"""Commands that ask a library: ``search``, ``similar``, ``captions``, ``duplicates``, ``tag``,
``map`` and ``serve``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mmsearch.cli._common import (
    ApertureOpt,
    CameraOpt,
    CountryOpt,
    DbUrlOpt,
    DedupOpt,
    DedupThresholdOpt,
    DeviceOpt,
    ExactOpt,
    ExposureOpt,
    FocalOpt,
    FromOpt,
    HtmlOpt,
    InOpt,
    IsoMaxOpt,
    JsonOpt,
    KneeOpt,
    LensOpt,
    LibraryOpt,
    MinHeightOpt,
    MinRatingOpt,
    MinWidthOpt,
    ModelOpt,
    NearOpt,
    OpenOpt,
    OrientationOpt,
    PathsOnlyOpt,
    PlaceOpt,
    RadiusOpt,
    SortOpt,
    ToOpt,
    TopK,
    TypeOpt,
    WithinOpt,
    app,
    check_output_options,
    command,
    open_for_queries,
    open_library_for,
    print_image_hits,
    print_json,
)
from mmsearch.errors import MMSearchError
from mmsearch.search.fusion import DEFAULT_MODE


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
    mode: Annotated[
        str,
        typer.Option(
            help="hybrid: the picture's meaning and its words (names, metadata, descriptions, "
            "places) together; semantic: meaning only; keyword: words only."
        ),
    ] = DEFAULT_MODE,
    k: TopK = 10,
    folder: InOpt = None,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    min_width: MinWidthOpt = None,
    min_height: MinHeightOpt = None,
    orientation: OrientationOpt = None,
    file_type: TypeOpt = None,
    camera: CameraOpt = None,
    lens: LensOpt = None,
    focal: FocalOpt = None,
    aperture: ApertureOpt = None,
    exposure: ExposureOpt = None,
    iso_max: IsoMaxOpt = None,
    near: NearOpt = None,
    radius: RadiusOpt = None,
    country: CountryOpt = None,
    place: PlaceOpt = None,
    min_rating: MinRatingOpt = None,
    within: WithinOpt = None,
    knee: KneeOpt = False,
    dedup: DedupOpt = False,
    dedup_threshold: DedupThresholdOpt = None,
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
    from mmsearch.search.terms import QueryTerm

    check_output_options(as_json, paths_only)
    terms = [QueryTerm.parse(query)]
    terms += [QueryTerm.parse(t) for t in plus or []]
    terms += [QueryTerm.parse(t, sign=-1.0) for t in minus or []]
    where = _filter(locals())
    with open_library_for(library, model, device, db_url, query=True) as lib:
        relevance = _relevance(lib, within, knee, dedup, dedup_threshold, sort)
        hits = lib.search(terms, k=k, where=where, relevance=relevance, exact=exact, mode=mode)
        # Words are matched in any script; only the model's scores depend on its languages.
        semantic = mode != "keyword"
        warnings = [lib.query_language_warning(t.text) for t in terms if t.text and semantic]
    for warning in filter(None, warnings):
        typer.echo(f"Warning: {warning}", err=True)
    print_image_hits(hits, as_json, paths_only)
    from mmsearch.words import query_terms

    words = [w for part in query_terms(" ".join([query, *(plus or [])])) for w in part]
    _contact_sheet(hits, f"mmsearch: {query}", html, open_results, words)


def _contact_sheet(hits, title: str, html: Path | None, open_results: bool, words=()) -> None:
    """Write the hits' contact sheet (to --html, or a temporary file for --open) and open it."""
    if html is None and not open_results:
        return
    from mmsearch.serve.pages import contact_sheet, write_page

    if html is None:
        import tempfile

        html = Path(tempfile.mkstemp(prefix="mmsearch-", suffix=".html")[1])
    write_page(contact_sheet(hits, title, words), html)
    if open_results:
        typer.launch(str(html), wait=True)  # the viewer forks; no zombie


def _filter(options: dict):
    """The ImageFilter of a query command's filter options (its ``locals()``: search and
    similar take the same ones)."""
    from mmsearch.places import parse_near
    from mmsearch.search.terms import ImageFilter, parse_exposure, parse_range

    o = options
    if o["radius"] and not o["near"]:
        raise MMSearchError("--radius goes with --near: say near what (--near Lisbon)")
    formats = [f for value in o["file_type"] or [] for f in value.split(",") if f.strip()]
    return ImageFilter(
        folders=tuple(str(f) for f in o["folder"] or []),
        date_from=o["date_from"],
        date_to=o["date_to"],
        min_width=o["min_width"],
        min_height=o["min_height"],
        orientation=o["orientation"],
        formats=tuple(formats),
        camera=o["camera"],
        lens=o["lens"],
        focal=parse_range(o["focal"], "--focal") if o["focal"] else None,
        aperture=parse_range(o["aperture"], "--aperture") if o["aperture"] else None,
        exposure=parse_exposure(o["exposure"]) if o["exposure"] else None,
        iso=(None, o["iso_max"]) if o["iso_max"] else None,
        near=parse_near(o["near"], o["radius"]) if o["near"] else None,
        country=o["country"],
        place=o["place"],
        min_rating=o["min_rating"],
    )


def _relevance(lib, within, knee, dedup, dedup_threshold, sort):
    from mmsearch.search.terms import Relevance

    threshold = dedup_threshold or lib.duplicate_threshold
    return Relevance(within=within, knee=knee, dedup=threshold if dedup else None, sort=sort)


@app.command()
@command
def similar(
    image: Annotated[
        Path,
        typer.Argument(
            help="An image or video file, in the library or not; a moment of a video as "
            "clip.mp4@02:14."
        ),
    ],
    k: TopK = 10,
    folder: InOpt = None,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    min_width: MinWidthOpt = None,
    min_height: MinHeightOpt = None,
    orientation: OrientationOpt = None,
    file_type: TypeOpt = None,
    camera: CameraOpt = None,
    lens: LensOpt = None,
    focal: FocalOpt = None,
    aperture: ApertureOpt = None,
    exposure: ExposureOpt = None,
    iso_max: IsoMaxOpt = None,
    near: NearOpt = None,
    radius: RadiusOpt = None,
    country: CountryOpt = None,
    place: PlaceOpt = None,
    min_rating: MinRatingOpt = None,
    within: WithinOpt = None,
    knee: KneeOpt = False,
    dedup: DedupOpt = False,
    dedup_threshold: DedupThresholdOpt = None,
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
    check_output_options(as_json, paths_only)
    where = _filter(locals())
    with open_library_for(library, model, device, db_url, query=True) as lib:
        relevance = _relevance(lib, within, knee, dedup, dedup_threshold, sort)
        hits = lib.similar(image, k=k, where=where, relevance=relevance, exact=exact)
    print_image_hits(hits, as_json, paths_only)
    _contact_sheet(hits, f"mmsearch: like {image}", html, open_results)


@app.command()
@command
def captions(
    image: Annotated[
        Path,
        typer.Argument(help="An image file, or a moment of a video (clip.mp4@02:14)."),
    ],
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
    with open_library_for(library, model, device, db_url, query=True) as lib:
        hits = lib.captions(
            image, k=k, collection=collection, distinct=not keep_duplicates, exact=exact
        )
    if as_json:
        print_json([{"rank": n, **h.to_dict()} for n, h in enumerate(hits, 1)])
        return
    for n, hit in enumerate(hits, 1):
        typer.echo(f"{n:>3}  {hit.score:6.3f}  [{hit.collection}]  {hit.text}")


@app.command()
@command
def text(
    image: Annotated[Path, typer.Argument(help="An image in the library.")],
    library: LibraryOpt = None,
    db_url: DbUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the words the library keeps for an image: names, metadata, descriptions, OCR,
    places."""
    with open_library_for(library, db_url=db_url) as lib:
        texts = lib.image_texts(image)
    if as_json:
        print_json([words._asdict() for words in texts])
        return
    for words in texts:
        for line in words.text.splitlines() or [""]:
            typer.echo(f"[{words.kind}] {line}")


@app.command()
@command
def duplicates(
    threshold: DedupThresholdOpt = None,
    library: LibraryOpt = None,
    db_url: DbUrlOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List groups of near-identical images in the library."""
    with open_library_for(library, db_url=db_url) as lib:
        threshold = threshold or lib.duplicate_threshold
        groups = lib.duplicates(threshold)
    if as_json:
        print_json([g.to_dict() for g in groups])
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
    with open_for_queries(library, model, device) as lib:
        results = lib.tag(images, names, templates=templates)
    if as_json:
        print_json(
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
    from mmsearch.serve.pages import library_map, write_page

    with open_library_for(library, db_url=db_url) as lib:
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
        from mmsearch.serve import app as server
    except ImportError as exc:
        raise MMSearchError(
            f"mmsearch serve needs the web extra ({exc.name} is missing): "
            "pip install 'mmsearch[web]'"
        ) from exc
    with open_library_for(library, device=device, db_url=db_url) as lib:
        lib.encoder.encode_texts(["warm up"])  # load the model now, not on the first request

        def ready(url: str) -> None:
            typer.echo(f"serving {lib.library_dir} on {url} (Ctrl-C stops)")
            sys.stdout.flush()

        server.serve(lib, host, port, on_ready=ready, max_upload_bytes=int(max_upload_mb * 2**20))
