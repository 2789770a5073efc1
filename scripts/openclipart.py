"""Read the Open Clip Art Library as Debian ships it: images, captions and the held-out split.

Debian's ``openclipart-png`` holds the images under ``/usr/share/openclipart/png`` and
``openclipart-svg`` holds the same drawings as SVG, whose RDF metadata carries the human-written
``dc:title``, ``dc:description`` and keyword bag. Both ``sample_corpus/build.py`` and the
training-data script use this module, so the split and the captions are defined once.
"""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

PNG_ROOT = Path("/usr/share/openclipart/png")
SVG_ROOT = Path("/usr/share/openclipart/svg")

_NS = {
    "dc": "http://purl.org/dc/elements/1.1/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "cc": "http://web.resource.org/cc/",
}
_METADATA = re.compile(rb"<rdf:RDF.*?</rdf:RDF>", re.S)


def is_held_out(relative_path: str) -> bool:
    """The fixed held-out tenth: sample_corpus is drawn from it, training never sees it."""
    return int(hashlib.sha1(relative_path.encode()).hexdigest(), 16) % 10 == 0


@dataclass(frozen=True)
class ClipArt:
    relative_path: str  # e.g. "animals/mammals/contour_fox.png", relative to PNG_ROOT
    title: str
    description: str
    keywords: tuple[str, ...]

    @property
    def category(self) -> str:
        """The category path, e.g. "animals/mammals"."""
        return self.relative_path.rpartition("/")[0]

    @property
    def caption(self) -> str:
        """The evaluation caption: the title, or the category path when the title is empty."""
        return self.title or self.category.replace("/", " ").replace("_", " ")


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


def read_metadata(svg_path: Path) -> tuple[str, str, tuple[str, ...]]:
    """Title, description and keywords of one SVG (empty when missing or unparsable)."""
    try:
        match = _METADATA.search(svg_path.read_bytes())
        root = ET.fromstring(match.group(0)) if match else None
    except (OSError, ET.ParseError):
        root = None
    if root is None:
        return "", "", ()
    work = root.find("cc:Work", _NS)
    if work is None:
        return "", "", ()
    title = _clean(work.findtext("dc:title", default="", namespaces=_NS))
    description = _clean(work.findtext("dc:description", default="", namespaces=_NS))
    keywords = tuple(
        kw
        for li in work.iterfind("dc:subject/rdf:Bag/rdf:li", _NS)
        if (kw := _clean(li.text)) and kw.lower() != "unsorted"
    )
    return title, description, keywords


def iter_clipart(png_root: Path = PNG_ROOT, svg_root: Path = SVG_ROOT):
    """Every PNG of the library with its SVG metadata, in sorted path order."""
    for png in sorted(png_root.rglob("*.png")):
        rel = png.relative_to(png_root).as_posix()
        title, description, keywords = read_metadata((svg_root / rel).with_suffix(".svg"))
        yield ClipArt(rel, title, description, keywords)
