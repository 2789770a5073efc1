"""`mmsearch serve` as a real server process: the JSON API, what it refuses to serve, and the web
page driven in headless Chromium."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from PIL import Image

from mmsearch.imaging.pictures import open_picture
from tests.conftest import SAMPLE_CORPUS
from tests.helpers.phone_photos import save_phone_photo
from tests.helpers.raw_photos import drawing, save_camera_raw

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A library of sample_corpus (clipart-mini, captions added), a phone photo (HEIC), a camera
    RAW file, a file symlinked in from outside the indexed folder, and a server process on a free
    port."""
    root = tmp_path_factory.mktemp("serve")
    photos = root / "photos"
    shutil.copytree(SAMPLE_CORPUS / "images", photos)
    outside = root / "elsewhere"
    outside.mkdir()
    Image.new("RGB", (64, 64), "purple").save(outside / "secret.png")
    (photos / "link-out.png").symlink_to(outside / "secret.png")
    save_phone_photo(photos / "phone.heic")
    save_camera_raw(photos / "camera.nef", drawing(), orientation=6, preview_size=400)
    library = root / "lib"
    run = [sys.executable, "-m", "mmsearch"]
    subprocess.run([*run, "index", str(photos), "--library", str(library), "--model",
                    "clipart-mini"], check=True, capture_output=True)  # fmt: skip
    captions = str(SAMPLE_CORPUS / "captions.jsonl")
    subprocess.run([*run, "add-texts", captions, "--text-field", "caption", "--library",
                    str(library)], check=True, capture_output=True)  # fmt: skip
    server = subprocess.Popen(
        [*run, "serve", "--library", str(library), "--port", "0", "--max-upload-mb", "0.5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = server.stdout.readline()
    assert line.startswith("serving "), server.stderr.read()
    url = line.split(" on ")[1].split()[0].rstrip("/")
    yield url, photos, library
    server.terminate()
    server.communicate(timeout=30)


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def _json(url: str):
    status, _, body = _get(url)
    return status, json.loads(body)


def _upload(url: str, data: bytes, filename: str = "query.png"):
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"'
            f"\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"{url}/api/search/image",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _id_of(url: str, name: str) -> int:
    status, hits = _json(f"{url}/api/search?q=anything&k=1000")
    assert status == 200
    return next(h["id"] for h in hits if Path(h["path"]).name == name)


def test_info_and_text_search(served):
    url, photos, _ = served
    status, info = _json(f"{url}/api/info")
    assert status == 200 and info["images"] == 243 and info["texts"] == 240
    status, hits = _json(f"{url}/api/search?q=flag&k=5")
    assert status == 200 and len(hits) == 5
    assert any("flag" in h["path"] for h in hits)
    for hit in hits:  # a URL for every picture but the one linked in from outside
        served_url = None if hit["path"].endswith("link-out.png") else f"/api/thumbnail/{hit['id']}"
        assert hit["thumbnail"] == served_url


def test_search_with_terms_and_filters(served):
    url, photos, _ = served
    folder = photos / "shapes"
    status, hits = _json(f"{url}/api/search?q=star&minus=0.3:flag&in={folder}&k=3&type=png")
    assert status == 200 and len(hits) == 3
    assert all(h["path"].startswith(f"{folder}/") for h in hits)
    status, error = _json(f"{url}/api/search?q=star&from=June")
    assert status == 400 and "is not a date" in error["error"]
    status, error = _json(f"{url}/api/search?q=star&type=gif")
    assert status == 400 and error["error"].startswith("no image in the library matches")
    status, error = _json(f"{url}/api/search?k=5")
    assert status == 400 and "the query is empty" in error["error"]


def test_a_query_is_never_taken_for_a_server_file(served):
    url, photos, _ = served
    star = next((photos / "shapes").rglob("*.png"))
    status, hits = _json(f"{url}/api/search?q={star}&k=3")
    assert status == 200  # searched as text; the file was not read as a query image
    assert Path(hits[0]["path"]) != star or hits[0]["score"] < 0.99


def test_similar_and_captions_by_id(served):
    url, photos, _ = served
    star = _id_of(url, "star_23pt06step.png")
    status, hits = _json(f"{url}/api/similar/{star}?k=5")
    assert status == 200 and len(hits) == 5 and star not in [h["id"] for h in hits]
    status, captions = _json(f"{url}/api/captions/{star}?k=3")
    assert status == 200 and len(captions) == 3
    assert {"rank", "text", "score", "collection"} <= set(captions[0])


def test_search_by_uploaded_image(served):
    url, photos, _ = served
    star = next(photos.rglob("star_23pt06step.png"))
    status, hits = _upload(url, star.read_bytes())
    assert status == 200 and hits
    assert str(star) not in [h["path"] for h in hits]  # the same picture is the query itself
    status, error = _upload(url, b"not an image at all")
    assert status == 400 and "cannot use" in error["error"] and "query image" in error["error"]
    just_over = 2**19 + 1000  # the server was started with --max-upload-mb 0.5
    status, error = _upload(url, os.urandom(just_over))
    assert status == 413 and error["error"] == "the upload is over 0.5 MB"
    try:  # far over: refused from Content-Length, before the body is read
        status, error = _upload(url, os.urandom(8 * 2**20))
        assert status == 413
    except urllib.error.URLError:
        pass  # the server answered 413 and closed while the client was still sending
    assert _json(f"{url}/api/info")[0] == 200  # and it carries on


def test_full_image_and_cached_thumbnail(served):
    url, photos, library = served
    star = next(photos.rglob("star_23pt06step.png"))
    image_id = _id_of(url, star.name)
    status, headers, body = _get(f"{url}/api/image/{image_id}")
    assert status == 200 and body == star.read_bytes()
    status, headers, body = _get(f"{url}/api/thumbnail/{image_id}")
    assert status == 200 and headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    assert list((library / "thumbnails").glob(f"{image_id}-*.jpg"))


@pytest.mark.parametrize("name", ["phone.heic", "camera.nef"])
def test_a_photo_browsers_cannot_show_is_viewed_as_jpeg(served, name):
    url, photos, _ = served
    status, headers, body = _get(f"{url}/api/image/{_id_of(url, name)}")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    view = Image.open(io.BytesIO(body))
    assert view.format == "JPEG"
    assert view.size == open_picture(photos / name).image.size  # upright, as taken


@pytest.mark.parametrize(
    "path",
    [
        "/api/image/../../../../etc/passwd",
        "/api/image/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/api/image/..%2F..%2Fetc%2Fpasswd",
        "/api/thumbnail/%2Fetc%2Fpasswd",
        "/api/image/-1",
        "/api/image/99999999",
        "/api/thumbnail/abc",
        "/etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
    ],
)
def test_only_library_files_are_served(served, path):
    url, _, _ = served
    status, _, body = _get(url + path)
    assert status == 404, body[:200]
    assert b"root:" not in body


def test_symlink_leading_out_of_the_indexed_folder_is_not_served(served):
    url, photos, _ = served
    link_id = _id_of(url, "link-out.png")  # indexed (it is a picture) ...
    _, hits = _json(f"{url}/api/search?q=anything&k=1000")
    [link] = [h for h in hits if h["id"] == link_id]
    assert link["thumbnail"] is None and link["image"] is None
    for kind in ("image", "thumbnail", "similar", "captions"):
        status, _, body = _get(f"{url}/api/{kind}/{link_id}")
        assert status == 404, (kind, body)  # ... but never handed out


def test_a_file_changed_since_indexing_is_not_served(served):
    url, photos, _ = served
    victim = next(photos.rglob("*.png"))
    image_id = _id_of(url, victim.name)
    original = victim.read_bytes()
    try:
        victim.write_bytes(b"swapped for something else")
        assert _get(f"{url}/api/image/{image_id}")[0] == 404
    finally:
        victim.write_bytes(original)


def test_web_page_search_then_click_through(served, browser_page):
    url, _, _ = served
    page = browser_page
    page.goto(url + "/")
    page.fill("#q", "flag")
    page.press("#q", "Enter")
    page.wait_for_selector(".hit img")
    page.wait_for_function(
        "[...document.querySelectorAll('.hit img')].slice(0, 4)"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    paths = page.eval_on_selector_all(".hit", "cards => cards.map(c => c.dataset.path)")
    assert any("flag" in p for p in paths[:5]), paths[:5]
    page.click(".hit >> nth=0")
    page.wait_for_selector("#captions li")
    assert page.locator("#captions li").count() >= 1
    page.click("#more")
    page.wait_for_function("document.querySelector('#status').textContent.includes('like')")
    assert page.locator(".hit").count() > 0
