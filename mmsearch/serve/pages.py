"""Self-contained HTML pages of results: a contact sheet of hits, and a 2-D map of a library.

Thumbnails are embedded as base64 JPEG data URIs, so a page is one file that can be mailed,
archived or opened offline. Pictures are decoded with the same safe loader as indexing; a file
that has gone or cannot be decoded gets a labelled placeholder instead of breaking the page.
Every path, caption and query is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path

from mmsearch.errors import ImageError, InputError
from mmsearch.imaging.pictures import jpeg_rendering
from mmsearch.results import ImageHit
from mmsearch.timecodes import clock

THUMBNAIL = 256

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 1.5em; background: #fafafa; color: #222; }
h1 { font-size: 1.2em; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 12px; }
figure { margin: 0; background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px; }
figure img { width: 100%; height: 200px; object-fit: contain; background: #eee; }
figcaption { font-size: 12px; word-break: break-all; margin-top: 6px; }
.score { font-weight: 600; }
.why { color: #555; margin-top: 3px; }
.why mark { background: #fd6; }
.missing { display: flex; align-items: center; justify-content: center; height: 200px;
           background: #eee; color: #888; }
.map { position: relative; background: #fff; border: 1px solid #ddd; }
.map img { position: absolute; width: 48px; height: 48px; object-fit: contain;
           transform: translate(-50%, -50%); }
.map img:hover { width: 160px; height: 160px; z-index: 10; box-shadow: 0 2px 8px #0006; }
"""


def thumbnail_uri(path: str, size: int = THUMBNAIL, at: float | None = None) -> str | None:
    """A JPEG data URI of the picture (a video: its frame ``at`` seconds in) fitted in ``size``
    pixels; None when it cannot be read."""
    try:
        data = jpeg_rendering(path, size, quality=82, at=at)
    except ImageError:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


KIND_NAMES = {"name": "name", "metadata": "keywords", "description": "description",
              "ocr": "text in the picture", "place": "place"}  # fmt: skip


def why(hit: ImageHit, words: Sequence[str]) -> str:
    """HTML of the words a keyword or hybrid hit matched, the query's words highlighted."""
    lines = []
    for kind, text in hit.matched:
        if kind in KIND_NAMES:
            snippet = html.escape(" ".join(str(text).split())[:160])
            for word in sorted(words, key=len, reverse=True):
                pattern = re.compile(re.escape(html.escape(word)), re.IGNORECASE)
                snippet = pattern.sub(lambda m: f"<mark>{m[0]}</mark>", snippet)
            lines.append(f'<div class="why">{KIND_NAMES[kind]}: {snippet}</div>')
    return "".join(lines)


def contact_sheet(hits: Sequence[ImageHit], title: str, words: Sequence[str] = ()) -> str:
    """An HTML page with one card per hit: thumbnail, rank, score, date, size and path, and
    the matched ``words`` highlighted where a hit matched by its words."""
    cards = []
    for rank, hit in enumerate(hits, 1):
        # A video: the frame of its best moment, and the link plays it from there.
        at = hit.moments[0][0] if hit.moments else None
        uri = thumbnail_uri(hit.path, at=at)
        picture = (
            f'<img src="{uri}" alt="{html.escape(Path(hit.path).name)}">'
            if uri
            else '<div class="missing">cannot read this file</div>'
        )
        details = [f'<span class="score">{rank}. {hit.score:.3f}</span>']
        if hit.taken_at:
            details.append(html.escape(hit.taken_at[:10]))
        details.append(f"{hit.width}×{hit.height}")
        if hit.duplicates:
            details.append(f"+{len(hit.duplicates)} near-identical")
        link = Path(hit.path).as_uri()
        if hit.moments:
            details.append("video at " + ", ".join(clock(t) for t, _ in hit.moments))
            link += f"#t={at:g}"  # a media fragment: browsers start playing there
        cards.append(
            f'<figure data-path="{html.escape(hit.path)}">{picture}<figcaption>'
            f"{' · '.join(details)}<br>"
            f'<a href="{html.escape(link)}">{html.escape(hit.path)}</a>'
            f"{why(hit, words)}</figcaption></figure>"
        )
    body = "\n".join(cards) or "<p>No results.</p>"
    return _page(title, f'<div class="grid">\n{body}\n</div>')


def library_map(points: Sequence[tuple], title: str, size: int = 1200) -> str:
    """An HTML page that places a thumbnail of each image at its 2-D position (x, y in [0, 1];
    points as Searcher.map_points gives them: a video shows its poster frame)."""
    items = []
    for x, y, path, at in points:
        uri = thumbnail_uri(path, size=96, at=at)
        if uri is None:
            continue
        items.append(
            f'<img src="{uri}" title="{html.escape(path)}" '
            f'style="left:{x * 100:.2f}%;top:{y * 100:.2f}%">'
        )
    canvas = f'<div class="map" style="width:{size}px;height:{size}px">{"".join(items)}</div>'
    return _page(title, canvas)


def write_page(page: str, file: str | Path) -> Path:
    """Write a page; a folder that does not exist or cannot be written is a clear error."""
    file = Path(file)
    try:
        file.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {file}: {exc.strerror}") from exc
    return file


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )
