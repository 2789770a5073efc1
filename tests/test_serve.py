"""`mmsearch serve` as a real server process: the JSON API, what it refuses to serve, and the web
page driven in headless Chromium."""

from __future__ import annotations

import contextlib
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
from tests.conftest import SAMPLE_CORPUS, new_database
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
    with serving(library, "--max-upload-mb", "0.5") as url:
        yield url, photos, library


@contextlib.contextmanager
def serving(library, *options):
    """`mmsearch serve` on a free port, as a process; yields its URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "mmsearch", "serve", "--library", str(library), "--port", "0",
         *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = server.stdout.readline()
        assert line.startswith("serving "), server.stderr.read()
        yield line.split(" on ")[1].split()[0].rstrip("/")
    finally:
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
    assert status == 200, hits
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


def test_places_are_listed_and_filter_every_search(served):
    """The phone photo has a GPS position in Lisbon: /api/places lists it, and ``country`` and
    ``near`` filter searches, searches by an upload and "more like this"."""
    url, _, _ = served
    status, places = _json(f"{url}/api/places")
    assert status == 200
    assert [(p["country_code"], p["region"], p["images"]) for p in places] == [("PT", "Lisbon", 1)]
    for query in ("api/search?q=anything&country=pt", "api/search?q=anything&near=Lisbon",
                  f"api/similar/{_id_of(url, 'camera.nef')}?place=Portugal"):  # fmt: skip
        status, hits = _json(f"{url}/{query}")
        assert status == 200 and [Path(h["path"]).name for h in hits] == ["phone.heic"], query
    status, error = _json(f"{url}/api/search?q=anything&near=Qwzzyx")
    assert status == 400 and "no town or city called 'Qwzzyx'" in error["error"]


def test_the_api_answers_on_postgresql_as_on_sqlite(served, postgres_server, tmp_path):
    """The web app on a PostgreSQL library (pgvector) of the same files answers as on SQLite:
    searches with terms and filters, places, similar, captions and errors."""
    url, photos, _ = served
    library = tmp_path / "pg"
    run = [sys.executable, "-m", "mmsearch"]
    subprocess.run([*run, "index", str(photos), "--library", str(library), "--model",
                    "clipart-mini", "--db-url", new_database(postgres_server)], check=True,
                   capture_output=True)  # fmt: skip
    captions = str(SAMPLE_CORPUS / "captions.jsonl")
    subprocess.run([*run, "add-texts", captions, "--text-field", "caption", "--library",
                    str(library)], check=True, capture_output=True)  # fmt: skip

    def answers(base: str) -> dict:
        star = _id_of(base, "star_23pt06step.png")  # ids may differ: compared by what they say
        asked = {
            "search": "api/search?q=flag&k=5",
            "terms and filters": f"api/search?q=star&minus=0.3:flag&in={photos / 'shapes'}&k=3"
            "&type=png",
            "landscape": "api/search?q=a+dog&k=5&orientation=landscape",
            "no match": "api/search?q=star&type=gif",
            "country": "api/search?q=anything&country=pt",
            "places": "api/places",
            "similar": f"api/similar/{star}?k=5",
            "captions": f"api/captions/{star}?k=3",
        }
        found = {}
        for name, query in asked.items():
            status, body = _json(f"{base}/{query}")
            if isinstance(body, list):
                body = [{k: v for k, v in item.items() if k not in ("id", "thumbnail")}
                        for item in body]  # fmt: skip
                for item in body:
                    item["score"] = round(item["score"], 3) if "score" in item else None
            found[name] = (status, body)
        return found

    with serving(library) as pg_url:
        assert answers(pg_url) == answers(url)


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


def test_every_api_error_is_json(served):
    url, _, _ = served
    for address, code in [("/api/similar/abc", 404), ("/api/nothing-here", 404)]:
        status, body = _json(url + address)
        assert status == code and body == {"error": f"no such address: {address}"}
    request = urllib.request.Request(f"{url}/api/info", data=b"", method="POST")
    try:
        urllib.request.urlopen(request, timeout=60)
        raise AssertionError("POST /api/info was accepted")
    except urllib.error.HTTPError as error:
        assert error.code == 405 and json.loads(error.read()) == {"error": "method not allowed"}


def test_an_upload_error_names_the_upload_not_a_server_file(served):
    url, _, _ = served
    status, error = _upload(url, b"not an image at all", filename="holiday.png")
    assert status == 400
    assert error["error"].startswith("cannot use holiday.png as a query image: holiday.png: ")
    assert "/tmp" not in error["error"] and os.sep + "tmp" not in error["error"]


PHONE, DESKTOP = {"width": 390, "height": 844}, {"width": 1280, "height": 800}


@pytest.mark.parametrize("screen", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_web_page_at_desktop_and_phone_widths(served, browser_page, screen, tmp_path):
    """Every control fits the screen, tiles say where a picture lives, near-identical results
    fold on request, and a query image comes from a file picker or the clipboard."""
    url, photos, _ = served
    page = browser_page
    page.set_viewport_size(screen)
    failed = []
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
    page.goto(url + "/")
    assert page.get_attribute("link[rel=icon]", "href").startswith("data:image/svg+xml")
    for control in ("#q", "#go", "#by-image", "#mode", "#dedup"):
        box = page.locator(control).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= screen["width"], control

    page.fill("#q", "kansasflag")  # a word of one file's name: it says why it matched
    page.press("#q", "Enter")
    page.wait_for_selector(".hit .why mark")
    assert page.locator(".hit .why mark").first.text_content().lower() == "kansasflag"
    page.fill("#q", "a flag")
    page.press("#q", "Enter")
    page.wait_for_function("document.querySelector('#status').textContent.includes('a flag')")
    page.wait_for_selector(".hit .meta")
    meta = page.locator(".hit .meta").first
    full = meta.get_attribute("title")
    assert full.startswith(str(photos))  # the whole path on hover
    folder = page.locator(".hit .folder").first.text_content()
    assert folder == Path(full).parent.name + "/"  # and the folder on the tile
    page.screenshot(path=str(tmp_path / "results.png"), full_page=False)

    with page.expect_request(lambda r: "dedup=1" in r.url):
        page.check("#dedup")
    page.wait_for_function("document.querySelector('#status').textContent.includes('results')")

    star = next(photos.rglob("star_23pt06step.png"))
    page.set_input_files("#pick", str(star))
    page.wait_for_function(
        "document.querySelector('#status').textContent.includes('like star_23pt06step.png')"
    )
    assert page.locator(".hit").count() > 0

    page.evaluate(
        """async (src) => {
            const blob = await (await fetch(src)).blob();
            const data = new DataTransfer();
            data.items.add(new File([blob], "", { type: "image/png" }));
            document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data }));
        }""",
        page.locator(".hit img").first.get_attribute("src"),
    )
    page.wait_for_function(
        "document.querySelector('#status').textContent.includes('like the pasted image')"
    )
    page.screenshot(path=str(tmp_path / "pasted.png"))

    assert page.locator("#where option").all_text_contents() == [
        "anywhere", "Portugal (1)", "Baixa, Lisbon (1)"]  # fmt: skip
    page.fill("#q", "a flag")
    with page.expect_request(lambda r: "country=PT" in r.url):
        page.select_option("#where", label="Portugal (1)")
    page.wait_for_function("document.querySelectorAll('.hit').length === 1")
    assert page.locator(".hit .meta").first.get_attribute("title").endswith("phone.heic")
    assert failed == []


def test_the_viewer_boxes_the_text_that_matched(tmp_path, browser_page):
    """With --ocr, the words found in a picture are searchable, and opening the hit draws a box
    around each line of text that holds the query's words."""
    from mmsearch.imaging.ocr import ocr_available
    from tests.test_ocr import sign

    if not ocr_available():
        pytest.skip("pip install 'mmsearch[ocr]'")
    photos = tmp_path / "photos"
    photos.mkdir()
    sign(photos / "sign.png", ["Hotel Sakura", "Q3 revenue 2041"])
    shutil.copy(next(SAMPLE_CORPUS.rglob("star_23pt06step.png")), photos / "star.png")
    library = tmp_path / "lib"
    subprocess.run(
        [sys.executable, "-m", "mmsearch", "index", str(photos), "--ocr", "--library",
         str(library), "--model", "clipart-mini", "--workers", "0"],
        check=True, capture_output=True,
    )  # fmt: skip
    with serving(library) as url:
        page = browser_page
        page.goto(url + "/")
        page.select_option("#mode", "keyword")
        page.fill("#q", "revenue")
        page.press("#q", "Enter")
        page.wait_for_selector(".hit .why mark")
        page.click(".hit >> nth=0")
        page.wait_for_selector("#frame .region")
        assert page.locator("#frame .region").count() == 1  # the revenue line, not the hotel
        assert page.get_attribute("#frame .region", "title") == "Q3 revenue 2041"
        page.screenshot(path=str(tmp_path / "viewer.png"))
