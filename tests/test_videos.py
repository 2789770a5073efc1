"""Videos through the real CLI: moments sampled per scene by PyAV from videos encoded here by
FFmpeg's own encoders (tests/helpers/videos.py), searched with the bundled model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from mmsearch.cli import app
from mmsearch.errors import ImageError
from mmsearch.imaging.video import MIN_SPACING, poster_index, sample_video
from tests.conftest import SAMPLE_CORPUS
from tests.helpers.videos import BLACK, Scene, make_video

IMAGES = SAMPLE_CORPUS / "images"
FLAG = IMAGES / "signs_and_symbols/flags/kansasflag_dave_reckonin_01.png"
FRUIT = IMAGES / "food/fruit/orange_dave_pena_01.png"
STAR = IMAGES / "shapes/stars/star_23pt06step.png"
DOG = IMAGES / "animals/mammals/dogs/dog_head_nicu_buculei_02.png"
CAR = IMAGES / "transportation/sportcar_sergio_luiz_ara_01.png"
PLANE = IMAGES / "transportation/vehicles/aircraft_jarno_vasamaa2.png"
WALLPAPERS = Path("/usr/share/wallpapers")
# A flag for 2 s, fruit for 3 s, a star for 2 s, after a black second: the scenes' spans.
PARTY = [Scene(BLACK, 1), Scene(FLAG, 2), Scene(FRUIT, 3), Scene(STAR, 2)]
SPANS = {"flag": (1, 3), "fruit": (3, 6), "star": (6, 8)}


def _within(t: float, scene: str) -> bool:
    low, high = SPANS[scene]
    return low <= t < high


# -- sampling -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="h264"),
        pytest.param({"variable_rate": True}, id="variable-frame-rate"),
        pytest.param({"audio": True}, id="with-audio"),
        pytest.param({"keyframe_interval": 1000}, id="one-keyframe-no-scene-cuts"),
        pytest.param({"codec": "libvpx-vp9", "suffix": ".webm"}, id="vp9-webm"),
        pytest.param({"codec": "mpeg4", "suffix": ".avi"}, id="mpeg4-avi"),
    ],
)
def test_one_moment_per_scene_and_never_the_black_intro(tmp_path, options):
    suffix = options.pop("suffix", ".mp4")
    video = sample_video(str(make_video(tmp_path / f"party{suffix}", PARTY, **options)), 224)
    assert video.duration_s == pytest.approx(8.0, abs=0.4)
    times = [m.t for m in video.moments]
    assert len(times) == 3, times
    for t, scene in zip(times, ("flag", "fruit", "star"), strict=True):
        assert _within(t, scene), (times, scene)
    assert all(min(m.image.size) == 224 for m in video.moments)


def test_a_portrait_phone_video_is_turned_upright(tmp_path):
    # Phones store portrait video sideways, with a display rotation in the container.
    path = make_video(tmp_path / "portrait.mp4", [Scene(FLAG, 2)], size=(320, 180), rotation=-90)
    video = sample_video(str(path), 64)
    assert (video.width, video.height) == (180, 320)
    (moment,) = video.moments
    assert moment.image.width < moment.image.height


def test_a_long_video_stays_within_the_cap_and_the_spacing(tmp_path):
    pictures = [FLAG, FRUIT, STAR, DOG]
    scenes = [Scene(pictures[i % 4], 1.5) for i in range(40)]  # a new scene every 1.5 s
    video = sample_video(str(make_video(tmp_path / "long.mp4", scenes, fps=4)), 32, max_moments=8)
    times = [m.t for m in video.moments]
    assert 4 <= len(times) <= 8
    assert all(b - a >= MIN_SPACING for a, b in zip(times, times[1:], strict=False))


def test_a_4k_video_is_decoded_at_reduced_size(tmp_path):
    path = make_video(tmp_path / "uhd.mp4", [Scene(FRUIT, 1)], size=(3840, 2160), fps=2)
    video = sample_video(str(path), 224)
    assert (video.width, video.height) == (3840, 2160)
    assert all(m.image.size == (398, 224) for m in video.moments)


def test_container_creation_time_and_words(tmp_path):
    path = make_video(tmp_path / "c.mov", [Scene(FLAG, 1)], creation_time="2024-06-01T10:00:00Z")
    video = sample_video(str(path), 32)
    assert video.taken_at is not None and video.taken_at.startswith("2024-06-01")
    assert video.format == "MOV"


# -- bad input ----------------------------------------------------------------------------------


def _unknown_codec(source: Path, target: Path) -> Path:
    """The same file with its video sample entry renamed to a codec no FFmpeg knows."""
    data = bytearray(source.read_bytes())
    entry = data.find(b"stsd") + 16
    assert data[entry : entry + 4] == b"avc1"
    data[entry : entry + 4] = b"zzzz"
    target.write_bytes(data)
    return target


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        from tests.helpers.videos import _add_tone

        _add_tone(container, stream, 1.0)
    return path


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda d: _written(d / "empty.mp4", b""), "empty"),
        (lambda d: _written(d / "notes.mp4", b"not a video"), "not-a-video"),
        (lambda d: _audio_only(d / "song.mp4"), "no-video-track"),
        (lambda d: _unknown_codec(make_video(d / "a.mp4", PARTY), d / "zz.mp4"), "needs-decoder"),
        (lambda d: make_video(d / "dark.mp4", [Scene(BLACK, 2)]), "blank"),
    ],
    ids=["zero-bytes", "not-a-video", "audio-only", "unknown-codec", "all-black"],
)
def test_bad_videos_have_their_own_reasons(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(ImageError) as caught:
        sample_video(str(path), 32)
    assert caught.value.reason == reason
    assert str(path) in str(caught.value)


def test_a_truncated_video_keeps_the_moments_before_the_damage(tmp_path):
    whole = make_video(tmp_path / "whole.mp4", PARTY, keyframe_interval=10)
    # An MP4 written by a camera that died: the index (moov) is at the end and lost with it.
    cut = tmp_path / "cut.mkv"
    make_video(cut, PARTY, keyframe_interval=10)
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    video = sample_video(str(cut), 32)
    assert 1 <= len(video.moments) <= len(sample_video(str(whole), 32).moments)
    lost = tmp_path / "lost.mp4"
    lost.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ImageError) as caught:
        sample_video(str(lost), 32)
    assert caught.value.reason == "corrupt"


def test_a_one_frame_video_is_one_moment(tmp_path):
    video = sample_video(str(make_video(tmp_path / "one.mp4", [Scene(FLAG, 0.1)])), 32)
    assert [m.t for m in video.moments] == [0.0]


def test_the_poster_is_the_central_moment_and_ties_go_to_the_earliest():
    """Rounding, which differs with the batch a frame was encoded in, must not change the
    poster: a resumed run stores the one a single run stores (a SIGKILL campaign found that)."""
    rng = np.random.default_rng(0)
    a, b, c = (v / np.linalg.norm(v) for v in rng.normal(size=(3, 64)))
    central = (a + b) / np.linalg.norm(a + b)
    assert poster_index(np.stack([a, central, b])) == 1
    for _ in range(20):  # two moments are always equally near their mean
        noise = rng.normal(scale=1e-6, size=(2, 64))
        assert poster_index(np.stack([a, c]) + noise) == 0
        assert poster_index(np.stack([c, a]) + noise) == 0
    assert poster_index(a[None]) == 0


# -- through the CLI, with the bundled model -----------------------------------------------------


@pytest.fixture(scope="module")
def video_library(tmp_path_factory):
    """A folder of videos and a few drawings, indexed with the bundled model."""
    root = tmp_path_factory.mktemp("videos")
    photos = root / "photos"
    make_video(photos / "party.mp4", PARTY)
    # The same scenes re-encoded (another codec, size and container): a copy.
    make_video(photos / "party-copy.mkv", PARTY, codec="libx265", size=(256, 192))
    make_video(photos / "party-start.mp4", PARTY[:3])  # trimmed: a copy too
    # Two different videos that open with the same intro: no copies of each other.
    intro = Scene(next(WALLPAPERS.glob("*/contents/images/*.jpg"), DOG), 2)
    make_video(photos / "intro-car.mp4", [intro, Scene(CAR, 4)])
    make_video(photos / "intro-plane.mp4", [intro, Scene(PLANE, 4)])
    make_video(photos / "phone.mp4", [Scene(DOG, 2)], size=(320, 180), rotation=-90)
    for picture in (DOG, STAR):
        shutil.copy(picture, photos / picture.name)
    runner = CliRunner()
    lib = ["--library", str(root / "lib")]
    result = runner.invoke(
        app,
        [
            "index",
            str(photos),
            "--model",
            "lite0-muse-clipart-memory-jmdict",
            "--json",
            "--workers",
            "0",
            *lib,
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["added"], summary["videos"]) == (8, 6) and summary["moments"] >= 12

    def run(*args):
        result = runner.invoke(app, [*args, *lib])
        assert result.exit_code == 0, result.output
        return result

    run.photos, run.library = photos, root / "lib"
    return run


def _search(run, *args) -> list[dict]:
    return json.loads(run("search", *args, "--json", "--mode", "semantic").stdout)


@pytest.mark.parametrize("query, scene", [("a flag", "flag"), ("fresh fruit", "fruit")])
def test_a_text_query_finds_the_moment_in_the_video(video_library, query, scene):
    hits = _search(video_library, query, "--type", "video", "-k", "3")
    party = next(h for h in hits if h["path"].endswith("party.mp4"))
    assert party["kind"] == "video" and party["duration_s"] == pytest.approx(8, abs=0.4)
    best = party["moments"][0]
    assert _within(best["t"], scene), party["moments"]
    assert best["score"] == pytest.approx(party["score"], abs=1e-6)


def test_images_and_videos_rank_together_and_filter_by_kind(video_library):
    together = _search(video_library, "a dog", "-k", "10")
    assert {h["kind"] for h in together} == {"image", "video"}
    scores = [h["score"] for h in together]
    assert scores == sorted(scores, reverse=True)
    assert {h["kind"] for h in _search(video_library, "a dog", "--type", "image")} == {"image"}
    videos = _search(video_library, "a dog", "--type", "video")
    assert {h["kind"] for h in videos} == {"video"} and all(h["moments"] for h in videos)


def test_the_table_says_when(video_library):
    table = video_library(
        "search", "fresh fruit", "-k", "1", "--type", "video", "--mode", "semantic"
    )
    assert "at 00:0" in table.stdout and "(video, 00:0" in table.stdout


def test_similar_to_a_moment_of_a_video(video_library):
    photos = video_library.photos
    hits = json.loads(video_library("similar", f"{photos}/party.mp4@00:04", "--json").stdout)
    paths = [Path(h["path"]).name for h in hits]
    assert "party.mp4" not in paths  # the query itself
    copy = next(h for h in hits if h["path"].endswith("party-copy.mkv"))
    assert _within(copy["moments"][0]["t"], "fruit") and copy["score"] > 0.9


def test_duplicates_compare_sequences_of_moments(video_library):
    groups = json.loads(video_library("duplicates", "--json").stdout)
    names = [sorted(Path(p).name for p in g["paths"]) for g in groups]
    assert ["party-copy.mkv", "party-start.mp4", "party.mp4"] in names
    assert not any({"intro-car.mp4", "intro-plane.mp4"} & set(n) for n in names)


def test_info_counts_videos_moments_and_hours(video_library):
    info = json.loads(video_library("info", "--json").stdout)
    assert info["videos"] == 6 and info["images"] == 8
    assert info["moments"] >= 12
    assert info["video_hours"] == pytest.approx((8 + 8 + 6 + 6 + 6 + 2) / 3600, abs=0.001)
    assert "videos:      6 of them" in video_library("info").stdout


def test_no_videos_leaves_them_out(video_library, tmp_path):
    runner = CliRunner()
    lib = ["--library", str(tmp_path / "lib"), "--model", "lite0-muse-clipart-memory-jmdict"]
    result = runner.invoke(app, ["index", str(video_library.photos), "--no-videos", "--json", *lib])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["added"] == 2


def test_bad_videos_are_skipped_with_reasons_and_retried_only_when_they_should(tmp_path):
    folder = tmp_path / "photos"
    make_video(folder / "good.mp4", [Scene(FLAG, 1)])
    (folder / "notes.mp4").write_text("not a video")
    _unknown_codec(make_video(tmp_path / "a.mp4", PARTY), folder / "zz.mp4")
    runner = CliRunner()
    lib = ["--library", str(tmp_path / "lib"), "--model", "lite0-muse-clipart-memory-jmdict"]
    first = runner.invoke(app, ["index", str(folder), "--json", "--workers", "0", *lib])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["added"] == 1
    assert summary["skipped"] == {"not-a-video": 1, "needs-decoder": 1}
    again = json.loads(runner.invoke(app, ["index", str(folder), "--json", *lib]).stdout)
    messages = {Path(f["path"]).name: f["message"] for f in again["skipped_files"]}
    assert "not retried" in messages["notes.mp4"]  # unchanged and known bad
    assert "not retried" not in messages["zz.mp4"]  # a decoder may have come


def test_a_video_that_changes_while_indexed_is_indexed_again(tmp_path, monkeypatch):
    """The file is replaced after it was listed and before it was decoded: the run stores what
    it decoded under the size and time it listed, so the next run sees the change."""
    import indexer.decode

    folder = tmp_path / "photos"
    clip = make_video(folder / "clip.mp4", [Scene(FLAG, 2)])
    real = indexer.decode.sample_video

    def replaced_first(path, *args, **kwargs):
        make_video(clip, [Scene(FRUIT, 2), Scene(STAR, 2)])
        return real(path, *args, **kwargs)

    monkeypatch.setattr(indexer.decode, "sample_video", replaced_first)
    runner = CliRunner()
    lib = ["--library", str(tmp_path / "lib"), "--model", "lite0-muse-clipart-memory-jmdict"]
    assert runner.invoke(app, ["index", str(folder), "--workers", "0", *lib]).exit_code == 0
    monkeypatch.setattr(indexer.decode, "sample_video", real)
    again = json.loads(runner.invoke(app, ["index", str(folder), "--json", *lib]).stdout)
    assert again["updated"] == 1
    info = json.loads(runner.invoke(app, ["info", "--json", *lib[:2]]).stdout)
    assert info["moments"] == 2


# -- the web app ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_videos(video_library):
    from tests.test_serve import serving

    with serving(video_library.library) as url:
        yield url


def _get(url: str, headers: dict | None = None):
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as response:
        return response.status, response.headers, response.read()


def test_the_api_answers_with_moments_and_serves_videos_for_seeking(served_videos, video_library):
    status, _, body = _get(f"{served_videos}/api/search?q=fresh+fruit&type=video&k=3&mode=semantic")
    party = next(h for h in json.loads(body) if h["path"].endswith("party.mp4"))
    t = party["moments"][0]["t"]
    assert party["thumbnail"] == f"/api/thumbnail/{party['id']}?t={t:g}"
    status, headers, jpeg = _get(served_videos + party["thumbnail"])
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
    # A browser seeks with range requests.
    status, headers, part = _get(served_videos + party["image"], {"Range": "bytes=100-199"})
    size = (video_library.photos / "party.mp4").stat().st_size
    assert status == 206 and headers["Content-Range"] == f"bytes 100-199/{size}"
    assert part == (video_library.photos / "party.mp4").read_bytes()[100:200]
    assert headers["Content-Type"] == "video/mp4"
    # More like this moment: the copy, at the same scene.
    status, _, body = _get(f"{served_videos}/api/similar/{party['id']}?t={t}&k=3")
    copy = next(h for h in json.loads(body) if h["path"].endswith("party-copy.mkv"))
    assert _within(copy["moments"][0]["t"], "fruit")


def test_the_web_page_plays_a_video_from_its_moment(served_videos, browser_page):
    page = browser_page
    page.goto(served_videos + "/")
    page.fill("#q", "fresh fruit")
    page.press("#q", "Enter")
    page.wait_for_selector(".hit .when")
    page.click(".hit:has(.when) >> nth=0")
    page.wait_for_function(
        "(() => { const v = document.querySelector('#player');"
        " return !v.hidden && v.readyState >= 1 && v.currentTime > 0; })()"
    )
    moment = page.evaluate("document.querySelector('#player').currentTime")
    assert 1 <= moment < 8
    assert page.evaluate("document.querySelector('#full').hidden")


def test_the_contact_sheet_shows_the_moment(video_library, tmp_path):
    import base64
    import io

    from PIL import Image

    sheet = tmp_path / "sheet.html"
    video_library("search", "fresh fruit", "--type", "video", "-k", "1", "--mode", "semantic",
                  "--html", str(sheet))  # fmt: skip
    page = sheet.read_text()
    assert "video at 00:03" in page and '.mp4#t=3"' in page  # party.mp4 or its trimmed copy
    data = page.split('src="data:image/jpeg;base64,')[1].split('"')[0]
    frame = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
    # The fruit scene's frame (an orange drawing), not the black intro nor the flag.
    red, green, blue = frame.resize((1, 1)).getpixel((0, 0))
    assert red > blue + 20


def test_check_finds_and_repairs_damaged_moments(tmp_path):
    import sqlite3

    folder = tmp_path / "photos"
    make_video(folder / "party.mp4", PARTY)
    runner = CliRunner()
    lib = ["--library", str(tmp_path / "lib")]
    model = ["--model", "lite0-muse-clipart-memory-jmdict"]
    assert runner.invoke(app, ["index", str(folder), *model, *lib]).exit_code == 0
    assert runner.invoke(app, ["check", *lib]).exit_code == 0
    (tmp_path / "lib" / "moments.faiss").unlink()
    found = runner.invoke(app, ["check", *lib])
    assert found.exit_code == 1 and "moments.faiss" in found.stdout and "is missing" in found.stdout
    assert runner.invoke(app, ["check", "--repair", *lib]).exit_code == 0
    db = sqlite3.connect(tmp_path / "lib" / "library.db")
    db.execute("UPDATE moments SET embedding = x'00' WHERE id = (SELECT min(id) FROM moments)")
    db.commit()
    db.close()
    found = runner.invoke(app, ["check", *lib])
    assert found.exit_code == 1 and "stored moment vectors are damaged" in found.stdout
    repaired = runner.invoke(app, ["check", "--repair", *lib])
    assert "removed 1 videos with damaged moment vectors" in repaired.stdout, repaired.stdout
    assert runner.invoke(app, ["check", *lib]).exit_code == 0
    again = json.loads(runner.invoke(app, ["index", str(folder), "--json", *lib]).stdout)
    assert again["added"] == 1


def test_a_copy_takes_the_stored_moments_and_a_rename_keeps_them(tmp_path):
    folder = tmp_path / "photos"
    make_video(folder / "party.mp4", PARTY)
    shutil.copy(folder / "party.mp4", folder / "party (1).mp4")
    runner = CliRunner()
    lib = ["--library", str(tmp_path / "lib")]
    first = runner.invoke(
        app, ["index", str(folder), "--json", "--model", "lite0-muse-clipart-memory-jmdict", *lib]
    )
    assert json.loads(first.stdout)["reused"] == 1  # the copy: hashed, never decoded
    info = json.loads(runner.invoke(app, ["info", "--json", *lib]).stdout)
    assert (info["videos"], info["moments"]) == (2, 6)
    (folder / "party (1).mp4").rename(folder / "renamed.mp4")
    again = json.loads(runner.invoke(app, ["index", str(folder), "--json", *lib]).stdout)
    assert again["moved"] == 1
    hits = json.loads(
        runner.invoke(app, ["search", "fresh fruit", "--type", "video", "--json", *lib]).stdout
    )
    assert {Path(h["path"]).name for h in hits} == {"party.mp4", "renamed.mp4"}
    assert all(_within(h["moments"][0]["t"], "fruit") for h in hits)
    assert runner.invoke(app, ["check", *lib]).exit_code == 0


def test_the_map_shows_a_video_by_its_poster_frame(video_library, tmp_path):
    import base64
    import html as markup
    import io
    import re

    from PIL import Image

    page = tmp_path / "map.html"
    video_library("map", "--html", str(page))
    pictures = dict(
        (markup.unescape(title), uri)
        for uri, title in re.findall(
            r'<img src="data:image/jpeg;base64,([^"]+)" title="([^"]+)"', page.read_text()
        )
    )
    assert len(pictures) == 8
    poster = Image.open(
        io.BytesIO(base64.b64decode(pictures[str(video_library.photos / "party.mp4")]))
    )
    low, high = poster.convert("L").getextrema()
    assert high > 200 and high - low > 20  # a drawing on white, not the black first second
