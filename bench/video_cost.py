"""What videos cost to index: decoding per minute of video at 1080p and 4K (keyframes only, as
mmsearch does, against every frame), moments per minute, what the library grows by per hour of
video, peak memory on a long 4K video, and indexing throughput on a folder of photos and
videos, all in one run.

    python bench/video_cost.py [--seconds 30] [--photos 60] \
        [--model lite0-muse-clipart-memory-jmdict]

The videos are made here with libx264 (preset veryfast, B-frames on, its scene-cut keyframes):
real photographs (the Debian wallpapers) panned slowly, a new one every 4 seconds, at 24 frames
a second, as a phone or a camera would film them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

# One picture per wallpaper (each comes in several sizes).
WALLPAPERS = [
    max(folder.glob("contents/images/*.jpg"), key=lambda p: p.stat().st_size)
    for folder in sorted(Path("/usr/share/wallpapers").iterdir())
    if any(folder.glob("contents/images/*.jpg"))
]
FPS = 24
SCENE_SECONDS = 4

# VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's peak.
PEAK = """
import sys
from mmsearch.imaging.video import sample_video
video = sample_video(sys.argv[1], 224)
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(len(video.moments), peak.split()[1])
"""


def make_video(path: Path, size: tuple[int, int], seconds: float) -> Path:
    """A pan over a new photograph every SCENE_SECONDS, encoded by libx264."""
    import av

    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        pictures = {}
        for n in range(int(seconds * FPS)):
            scene = n // (SCENE_SECONDS * FPS)
            if scene not in pictures:
                source = Image.open(WALLPAPERS[scene % len(WALLPAPERS)]).convert("RGB")
                pictures = {scene: source.resize((width + width // 8, height + height // 8))}
            step = n % (SCENE_SECONDS * FPS)  # two pixels a frame, left to right
            left = min(step * 2, width // 8)
            frame = pictures[scene].crop((left, 0, left + width, height))
            for packet in stream.encode(av.VideoFrame.from_image(frame)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_seconds(path: Path, skip: str) -> tuple[float, int]:
    """Seconds to decode the video with FFmpeg's skip_frame (NONKEY or DEFAULT), and frames."""
    import av

    start = time.perf_counter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.skip_frame = skip
        frames = sum(1 for _ in container.decode(stream))
    return time.perf_counter() - start, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--photos", type=int, default=60)
    parser.add_argument("--model", default="lite0-muse-clipart-memory-jmdict")
    args = parser.parse_args()
    from mmsearch.imaging.video import sample_video

    report: dict = {"seconds_of_video": args.seconds, "fps": FPS, "scene_seconds": SCENE_SECONDS}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        made = time.perf_counter()
        videos = {
            "1080p": make_video(folder / "hd.mp4", (1920, 1080), args.seconds),
            "4K": make_video(folder / "uhd.mp4", (3840, 2160), args.seconds),
        }
        report["encode_s"] = round(time.perf_counter() - made, 1)
        per_minute = 60 / args.seconds
        for name, path in videos.items():
            keyframes, key_count = decode_seconds(path, "NONKEY")
            every, frame_count = decode_seconds(path, "DEFAULT")
            start = time.perf_counter()
            video = sample_video(str(path), 224)
            sampled = time.perf_counter() - start
            report[name] = {
                "file_mb_per_minute": round(path.stat().st_size / 2**20 * per_minute, 1),
                "frames": frame_count,
                "keyframes": key_count,
                "decode_every_frame_s_per_minute": round(every * per_minute, 2),
                "decode_keyframes_s_per_minute": round(keyframes * per_minute, 2),
                "keyframes_speedup": round(every / keyframes, 1),
                "sample_video_s_per_minute": round(sampled * per_minute, 2),
                "moments_per_minute": round(len(video.moments) * per_minute, 1),
            }
        # Peak memory: sampling the 4K video, and a video twice as long, in fresh processes.
        long = make_video(folder / "long-uhd.mp4", (3840, 2160), 2 * args.seconds)
        peaks = {}
        for name, path in (("4K", videos["4K"]), ("4K twice as long", long)):
            out = subprocess.check_output([sys.executable, "-c", PEAK, str(path)], text=True)
            moments, kilobytes = out.split()
            peaks[name] = {"moments": int(moments), "peak_rss_mb": round(int(kilobytes) / 1024)}
        report["peak_memory"] = peaks
        long.unlink()
        report["mixed_folder"] = mixed_folder(folder, args)
    print(json.dumps(report, indent=2))


def mixed_folder(folder: Path, args) -> dict:
    """Index ``args.photos`` photographs alone, then with the two videos: files and frames
    encoded a second, and what the library holds per moment."""
    from indexer import index_paths
    from mmsearch import open_library

    for n in range(args.photos):
        source = Image.open(WALLPAPERS[n % len(WALLPAPERS)]).convert("RGB")
        source.thumbnail((1600, 1600))
        noise = np.random.default_rng(n).integers(0, 8, (*source.size[::-1], 3), dtype=np.uint8)
        Image.fromarray(np.asarray(source) + noise).save(folder / f"photo{n}.jpg", quality=90)
    only_photos = folder.parent / "only-photos"
    only_photos.mkdir()
    for photo in folder.glob("photo*.jpg"):
        os.link(photo, only_photos / photo.name)
    report = {}
    for name, where in (("photos only", only_photos), ("photos and videos", folder)):
        with tempfile.TemporaryDirectory() as tmp:
            library = open_library(Path(tmp) / "lib", model=args.model)
            library.encoder.encode_images(np.zeros((1, 224, 224, 3), np.uint8))  # not timed
            start = time.perf_counter()
            summary = index_paths(library, [where])
            seconds = time.perf_counter() - start
            info = library.info()
            library.close()
            report[name] = {
                "files": summary.added,
                "videos": info.videos,
                "moments": info.moments,
                "seconds": round(seconds, 1),
                "files_per_s": round(summary.added / seconds, 2),
                "frames_encoded_per_s": round(
                    (summary.added - info.videos + info.moments) / seconds, 1
                ),
            }
            if info.videos:
                moments_file = Path(tmp) / "lib" / "moments.faiss"
                # Its vector in the database and in moments.faiss, and the row.
                per_moment = moments_file.stat().st_size / info.moments + 4 * info.model["dim"] + 40
                per_hour = info.moments / (2 * args.seconds) * 3600
                report["bytes_per_moment"] = round(per_moment)
                report["library_growth_mb_per_hour_of_video"] = round(
                    per_hour * per_moment / 2**20, 1
                )
    report["cpu_cores"] = os.cpu_count()
    return report


if __name__ == "__main__":
    main()
