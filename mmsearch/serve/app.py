"""``mmsearch serve``: a local web app and JSON API over one library (Starlette on uvicorn).

The library and its model are opened once and stay loaded, so a query costs only the encoder
and the search. Requests reach the library one at a time (a lock): the encoder already uses every
core for one query, and the library's caches are not built for concurrent mutation.

Only files that belong to the library are ever read or served, and only by id: a file must lie,
symlinks resolved, under a folder that was indexed, and be unchanged since (see
``Library.servable_paths``). Uploaded query images are size-limited and decoded with the same safe
loader as indexing. Thumbnails are made on demand and cached in the library folder.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from mmsearch.errors import EmptyLibraryError, InputError, MMSearchError
from mmsearch.imaging.raw import RAW_EXTENSIONS
from mmsearch.imaging.video import is_video_path
from mmsearch.library import Library
from mmsearch.places import parse_near
from mmsearch.results import MAX_RESULTS
from mmsearch.search.fusion import DEFAULT_MODE
from mmsearch.search.terms import (
    ImageFilter,
    QueryTerm,
    Relevance,
    parse_exposure,
    parse_range,
)

PAGE = Path(__file__).parent / "web" / "index.html"
THUMBNAIL_SIZE = 256
# Files most browsers cannot display (Safari alone shows HEIC and TIFF; none shows camera RAW)
# are viewed as JPEG renderings, at most this many pixels on their longer side.
NOT_FOR_BROWSERS = frozenset({".heic", ".heif", ".tif", ".tiff"}) | RAW_EXTENSIONS
VIEW_SIZE = 2048
DEFAULT_MAX_UPLOAD = 20 * 2**20


def create_app(library: Library, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD):
    """The ASGI application serving ``library``.

    Long on purpose: each route is a short closure over the one library, its lock and its
    thumbnail folder, which is how Starlette shares state without globals.
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    lock = threading.Lock()
    thumbnails = library.library_dir / "thumbnails"

    def locked(func, *args, **kwargs):
        with lock:
            return func(*args, **kwargs)

    async def call(func, *args, **kwargs):
        """Run a library call off the event loop; user errors become JSON 4xx answers."""
        try:
            return await run_in_threadpool(locked, func, *args, **kwargs)
        except EmptyLibraryError as exc:
            raise _HTTPError(409, str(exc)) from exc
        except MMSearchError as exc:
            raise _HTTPError(400, str(exc)) from exc

    async def hits_json(hits) -> list[dict]:
        """Hits with the URLs of their pictures (null for files that may not be served)."""
        servable = await call(library.servable_paths, [h.id for h in hits])
        return [
            {
                "rank": n,
                **h.to_dict(),
                # A video's thumbnail is the frame of its best moment; "image" is the video
                # file itself, served with range requests so that a browser can seek.
                "thumbnail": f"/api/thumbnail/{h.id}{_at(h)}" if servable[h.id] else None,
                "image": f"/api/image/{h.id}" if servable[h.id] else None,
            }
            for n, h in enumerate(hits, 1)
        ]

    async def page(request: Request):
        return FileResponse(PAGE, media_type="text/html")

    async def info(request: Request):
        details = await call(library.info)
        return JSONResponse(details.to_dict())

    async def search(request: Request):
        params = request.query_params
        # Text only: a query string is never taken for a file name on the server.
        terms = [
            QueryTerm.parse(v, files=False) for v in params.getlist("q") + params.getlist("plus")
        ]
        terms += [QueryTerm.parse(v, sign=-1.0, files=False) for v in params.getlist("minus")]
        terms += [
            QueryTerm(1.0, image=path)
            for path in [
                await call(_required_path, library, _id(i, "like")) for i in params.getlist("like")
            ]
        ]
        if not terms:
            raise _HTTPError(400, "the query is empty; pass q=... (or like=ID)")
        hits = await call(
            library.search,
            terms,
            k=_count(params.get("k", "20"), "k"),
            where=_filter(params),
            relevance=_relevance(params, library.duplicate_threshold),
            exact=params.get("exact") in ("1", "true"),
            mode=params.get("mode", DEFAULT_MODE),
        )
        return JSONResponse(await hits_json(hits))

    async def search_by_upload(request: Request):
        length = int(request.headers.get("content-length") or 0)
        if length > max_upload_bytes + 65536:
            raise _HTTPError(413, f"the upload is over {max_upload_bytes / 2**20:g} MB")
        form = await request.form(max_files=1, max_fields=20)
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise _HTTPError(400, 'send the query image as multipart form field "image"')
        data = await upload.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise _HTTPError(413, f"the upload is over {max_upload_bytes / 2**20:g} MB")
        k = _count(form.get("k", "20"), "k")
        name = Path(upload.filename or "upload").name
        with tempfile.NamedTemporaryFile(suffix=Path(name).suffix) as tmp:
            tmp.write(data)
            tmp.flush()
            try:
                hits = await call(library.similar, tmp.name, k=k, where=_filter(form))
            except _HTTPError as exc:  # name the upload, never a file on the server
                raise _HTTPError(exc.status, exc.message.replace(tmp.name, name)) from None
        return JSONResponse(await hits_json(hits))

    async def similar(request: Request):
        image_id = request.path_params["image_id"]
        params = request.query_params
        path = _moment(await call(_required_path, library, image_id), params)
        k = _count(params.get("k", "20"), "k")
        hits = await call(library.similar, path, k=k, where=_filter(params))
        return JSONResponse(await hits_json(hits))

    async def captions(request: Request):
        image_id = request.path_params["image_id"]
        params = request.query_params
        path = _moment(await call(_required_path, library, image_id), params)
        hits = await call(
            library.captions,
            path,
            k=_count(params.get("k", "5"), "k"),
            collection=params.get("collection") or None,
        )
        return JSONResponse([{"rank": n, **h.to_dict()} for n, h in enumerate(hits, 1)])

    async def places(request: Request):
        found = await call(library.places)
        return JSONResponse([p._asdict() for p in found])

    async def words(request: Request):
        path = await call(_required_path, library, request.path_params["image_id"])
        found = await call(library.image_texts, path)
        return JSONResponse([w._asdict() for w in found])

    async def image(request: Request):
        path = await call(_required_path, library, request.path_params["image_id"])
        if Path(path).suffix.lower() not in NOT_FOR_BROWSERS:
            return FileResponse(path)
        data = await run_in_threadpool(_jpeg, path, VIEW_SIZE, 90)
        return Response(data, media_type="image/jpeg")

    async def thumbnail(request: Request):
        image_id = request.path_params["image_id"]
        path = await call(_required_path, library, image_id)
        t = request.query_params.get("t")
        at = _number(t, "t") if t is not None else None
        data = await run_in_threadpool(_thumbnail, thumbnails, image_id, path, at)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def http_error(request: Request, exc: _HTTPError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    async def starlette_error(request: Request, exc: HTTPException):
        # An unknown address or method: JSON as every other API answer, not Starlette's text.
        message = {404: f"no such address: {request.url.path}", 405: "method not allowed"}
        return JSONResponse(
            {"error": message.get(exc.status_code, exc.detail)}, status_code=exc.status_code
        )

    async def value_error(request: Request, exc: InputError):
        return JSONResponse({"error": str(exc)}, status_code=400)

    routes = [
        Route("/", page),
        Route("/api/info", info),
        Route("/api/search", search),
        Route("/api/search/image", search_by_upload, methods=["POST"]),
        Route("/api/similar/{image_id:int}", similar),
        Route("/api/captions/{image_id:int}", captions),
        Route("/api/image/{image_id:int}", image),
        Route("/api/words/{image_id:int}", words),
        Route("/api/places", places),
        Route("/api/thumbnail/{image_id:int}", thumbnail),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={
            _HTTPError: http_error,
            InputError: value_error,
            HTTPException: starlette_error,
        },
    )


class _HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _required_path(library: Library, image_id: int) -> str:
    path = library.servable_paths([image_id])[image_id]
    if path is None:
        raise _HTTPError(404, f"no servable image {image_id} in this library")
    return path


def _at(hit) -> str:
    return f"?t={hit.moments[0][0]:g}" if hit.moments else ""


def _moment(path: str, params) -> str:
    """A video's moment as a query (``clip.mp4@134.2``), when ``t`` is given."""
    t = params.get("t")
    return f"{path}@{_number(t, 't'):g}" if t is not None and is_video_path(path) else path


def _jpeg(path: str, size: int, quality: int, at: float | None = None) -> bytes:
    """The picture upright (a video: its frame ``at`` seconds in) as a JPEG of at most ``size``
    pixels on its longer side."""
    from mmsearch.errors import ImageError
    from mmsearch.imaging.pictures import jpeg_rendering

    try:
        return jpeg_rendering(path, size, quality=quality, at=at)
    except ImageError as exc:
        raise _HTTPError(404, str(exc)) from exc


def _thumbnail(cache: Path, image_id: int, path: str, at: float | None = None) -> bytes:
    """A JPEG thumbnail, cached by id and file identity (a changed file gets a new one)."""
    stat = Path(path).stat()
    moment = f"-{at:g}" if at is not None else ""
    cached = cache / f"{image_id}-{stat.st_size}-{stat.st_mtime_ns}{moment}.jpg"
    if cached.is_file():
        return cached.read_bytes()
    data = _jpeg(path, THUMBNAIL_SIZE, 85, at)
    try:
        cache.mkdir(exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(cached)
    except OSError:
        pass  # a read-only library still serves thumbnails, uncached
    return data


def _count(value, name: str, most: int = MAX_RESULTS) -> int:
    """A whole number from 1 to ``most`` (a result count: MAX_RESULTS, the command line's rule)."""
    number = _id(value, name)
    if not 1 <= number <= most:
        raise _HTTPError(400, f"{name} must be between 1 and {most}")
    return number


def _id(value, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _HTTPError(400, f"{name} must be a whole number, not {value!r}") from None


def _number(value, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _HTTPError(400, f"{name} must be a number, not {value!r}") from None


def _size(value, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise _HTTPError(400, f"{name} must be a whole number of pixels, not {value!r}") from None


def _filter(params) -> ImageFilter | None:
    def get(key):
        value = params.get(key)
        return value if value not in (None, "") else None

    where = ImageFilter(
        folders=tuple(params.getlist("in")),
        date_from=get("from"),
        date_to=get("to"),
        min_width=_size(get("min_width"), "min_width"),
        min_height=_size(get("min_height"), "min_height"),
        orientation=get("orientation"),
        formats=tuple(params.getlist("type")),
        camera=get("camera"),
        lens=get("lens"),
        focal=parse_range(get("focal"), "focal") if get("focal") else None,
        aperture=parse_range(get("aperture"), "aperture") if get("aperture") else None,
        exposure=parse_exposure(get("exposure")) if get("exposure") else None,
        iso=(None, _count(get("iso_max"), "iso_max", 10**7)) if get("iso_max") else None,
        near=parse_near(get("near"), get("radius")) if get("near") else None,
        country=get("country"),
        place=get("place"),
        min_rating=_id(get("min_rating"), "min_rating") if get("min_rating") else None,
    )
    return where or None


def _relevance(params, default_threshold: float) -> Relevance:
    threshold = _number(params.get("dedup_threshold") or default_threshold, "dedup_threshold")
    return Relevance(
        within=_number(params["within"], "within") if params.get("within") else None,
        knee=params.get("knee") in ("1", "true"),
        dedup=threshold if params.get("dedup") in ("1", "true") else None,
        sort=params.get("sort", "score"),
    )


def serve(
    library: Library,
    host: str,
    port: int,
    *,
    on_ready=None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD,
) -> None:
    """Serve until interrupted. ``on_ready(url)`` is called once the socket is listening."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(128)
    url = f"http://{host}:{sock.getsockname()[1]}/"
    app = create_app(library, max_upload_bytes=max_upload_bytes)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    if on_ready is not None:
        on_ready(url)
    server.run(sockets=[sock])
