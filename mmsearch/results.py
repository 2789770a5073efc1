"""What queries and ``info`` return: plain frozen dataclasses with a ``to_dict`` for JSON output."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# How many hits one query may ask for, from the command line and the web API alike.
MAX_RESULTS = 1000


@dataclass(frozen=True)
class ImageHit:
    """An image found by a query; ``score`` is the cosine similarity to the query."""

    id: int
    path: str
    score: float
    width: int
    height: int
    format: str | None = None  # JPEG, PNG, ...
    taken_at: str | None = None  # ISO 8601 local time: EXIF DateTimeOriginal, else file mtime
    taken_from: str | None = None  # "exif" or "container" (a video's): a capture date; "mtime"
    camera: str | None = None  # its maker and model, where the file says
    lens: str | None = None
    place: str | None = None  # "town, region, country", where it has a GPS position near one
    position: tuple[float, float] | None = None  # GPS (latitude, longitude)
    rating: int | None = None  # XMP stars (-1 rejected)
    duration_s: float | None = None  # a video: its length in seconds
    # A video: its moments that best match the query, best first, as (seconds, score); the
    # hit's score is its best moment's.
    moments: tuple[tuple[float, float], ...] = ()
    duplicates: tuple[str, ...] = ()  # with --dedup: near-identical images folded into this one
    # Why it matched, in keyword and hybrid searches: (kind of words: "name", "metadata",
    # "description" → the text holding the query's words), and ("semantic", its rank there).
    matched: tuple[tuple[str, str | int], ...] = ()

    @property
    def kind(self) -> str:
        return "image" if self.duration_s is None else "video"

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "kind": self.kind,
            "moments": [{"t": t, "score": round(score, 6)} for t, score in self.moments],
            "position": list(self.position) if self.position else None,
            "duplicates": list(self.duplicates),
            "matched": dict(self.matched),
        }


@dataclass(frozen=True)
class TextHit:
    """A text (caption) found by an image query."""

    id: int
    text: str
    score: float
    collection: str
    external_id: str | None = None
    meta: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    texts: int
    source: str | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class IndexFileInfo:
    modality: str
    path: str
    bytes: int
    vectors: int
    current: bool

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LibraryInfo:
    """What a library holds and where (``mmsearch info``)."""

    library_dir: str
    database: str
    database_bytes: int | None
    model: dict | None
    images: int  # pictures and videos
    skipped_files: int
    texts: int
    videos: int = 0
    moments: int = 0  # of the videos
    video_hours: float = 0.0
    collections: list[CollectionInfo] = field(default_factory=list)
    index_files: list[IndexFileInfo] = field(default_factory=list)
    read_only: bool = False  # the folder or database cannot be written: searches only
    vector_store: str = "faiss"  # where image vectors are searched: "faiss" files or "pgvector"
    vector_index: str | None = None  # pgvector's index: "hnsw", "ivfflat, N lists" (None: none)

    def to_dict(self) -> dict:
        return asdict(self)
