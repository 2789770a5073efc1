"""The words photo tools write into a picture: EXIF descriptions and Windows keywords, XMP
(``dc:title``, ``dc:description``, ``dc:subject``, Lightroom's hierarchical keywords) and IPTC
(caption, headline, keywords).

Read with Pillow (XMP through defusedxml, which refuses entity tricks). A field that cannot be
read (malformed XML, a broken IPTC block, undecodable bytes) is left out and the rest kept:
a picture is never refused for its metadata.
"""

from __future__ import annotations

from PIL import Image, IptcImagePlugin

MAX_CHARS = 4000  # of metadata text kept per picture: keyword lists, not essays

_EXIF_TEXT = {0x010E: "ImageDescription"}
_EXIF_XP = {0x9C9B: "XPTitle", 0x9C9C: "XPComment", 0x9C9E: "XPKeywords", 0x9C9F: "XPSubject"}
_USER_COMMENT = 0x9286  # in the Exif IFD: 8 bytes naming the charset, then the text
_XMP_KEYS = {"title", "description", "subject", "hierarchicalSubject", "Headline"}
_IPTC = {(2, 5): "ObjectName", (2, 105): "Headline", (2, 120): "Caption", (2, 25): "Keywords"}


def embedded_text(image: Image.Image, problems: list[str] | None = None) -> str:
    """The picture's metadata words, one field value a line, duplicates dropped; a block that
    cannot be read is skipped, and why is added to ``problems`` (``index --verbose``)."""
    found: list[str] = []
    for block, read in (("EXIF", _exif), ("XMP", _xmp), ("IPTC", _iptc)):
        try:
            found += read(image)
        except Exception as exc:  # noqa: BLE001 - any malformed block: skip it, keep the picture
            if problems is not None:
                problems.append(f"{block} text skipped ({type(exc).__name__}: {exc})"[:200])
    lines = dict.fromkeys(s.strip() for s in found if s and s.strip())
    return "\n".join(lines)[:MAX_CHARS]


def _exif(image: Image.Image) -> list[str]:
    exif = image.getexif()
    values = [_text(exif.get(tag)) for tag in _EXIF_TEXT]
    for tag in _EXIF_XP:
        raw = exif.get(tag)
        if isinstance(raw, bytes | tuple):
            raw = bytes(raw).decode("utf-16-le", errors="ignore").rstrip("\x00")
            values += raw.replace(";", "\n").splitlines()
    comment = exif.get_ifd(0x8769).get(_USER_COMMENT)
    if isinstance(comment, bytes) and len(comment) > 8:
        charset, body = comment[:8], comment[8:]
        codec = "utf-16" if charset.startswith(b"UNICODE") else "utf-8"
        values.append(body.decode(codec, errors="ignore").rstrip("\x00"))
    return [v for v in values if v]


def _xmp(image: Image.Image) -> list[str]:
    if not hasattr(image, "getxmp"):
        return []
    values: list[str] = []

    def walk(node, wanted: bool) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("lang", "about", "xmptk"):
                    continue
                walk(value, wanted or key in _XMP_KEYS)
        elif isinstance(node, list):
            for value in node:
                walk(value, wanted)
        elif wanted and isinstance(node, str):
            values.extend(node.split("|") if "|" in node else [node])

    walk(image.getxmp(), False)
    return values


def _iptc(image: Image.Image) -> list[str]:
    info = IptcImagePlugin.getiptcinfo(image) or {}
    values = []
    for key in _IPTC:
        raw = info.get(key)
        for item in raw if isinstance(raw, list) else [raw]:
            values.append(_text(item))
    return [v for v in values if v]


def _text(value) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="ignore") or None
    return value if isinstance(value, str) else None


def embedded_rating(image: Image.Image) -> int | None:
    """The XMP rating written into the picture (Lightroom's exports), or None."""
    if not hasattr(image, "getxmp"):
        return None
    found: list = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                found.append(value) if key == "Rating" else walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    try:
        walk(image.getxmp())
        rating = round(float(found[0])) if found else None
    except Exception:  # noqa: BLE001 - malformed XMP was already reported with its words
        return None
    return rating if rating is not None and -1 <= rating <= 5 else None
