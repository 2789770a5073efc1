"""Keyword, semantic and hybrid search, measured: P@5 and R@10 per kind of query.

    python bench/keyword_eval.py [--constants 10,30,60,100]

Two libraries of sample_corpus, built in data/bench-keywords (reused), with
lite0-muse-clipart-memory-jmdict:

- **named**: the drawings under their own names, plus JPEG copies of 15 of them carrying XMP
  keywords written by exiftool (a place and a person each, Lightroom hierarchy included), and
  descriptions of 15 others given with ``index --descriptions``;
- **unnamed**: the same drawings as IMG_0001.png, IMG_0002.png, ... in one folder: words say
  nothing, so hybrid must not do worse than semantic there.

Query kinds (each with its known targets): ``name`` (a word of a file's name that no other
file has), ``keyword`` (an XMP keyword), ``description`` (words of a description),
``descriptive`` (sample_corpus/queries.json, English and Japanese, whose targets are folders
or file names). Needs exiftool (Debian: libimage-exiftool-perl).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mmsearch import open_library  # noqa: E402
from mmsearch.search import fusion  # noqa: E402

WORK = REPO / "data" / "bench-keywords"
PLACES = [
    "Sintra",
    "Hokkaido",
    "Cappadocia",
    "Lofoten",
    "Valparaiso",
    "Zanzibar",
    "Ushuaia",
    "Dubrovnik",
    "Chefchaouen",
    "Hallstatt",
    "Tromso",
    "Matera",
    "Oaxaca",
    "Bruges",
    "Kyoto",
]
PEOPLE = [
    "Aunt Maria",
    "Grandpa Joe",
    "Little Ines",
    "Uncle Tomasz",
    "Cousin Aiko",
    "Nana Rosa",
    "Mister Okafor",
    "Baby Lena",
    "Coach Rivera",
    "Auntie Priya",
    "Grandma Ilse",
    "Brother Kenji",
    "Sister Amara",
    "Pastor Dale",
    "Doctor Feld",
]
EVENTS = ["the picnic by the lighthouse", "our first flat warming party", "the school concert",
          "the harvest festival parade", "a rainy ferry crossing", "the kite contest",
          "the bakery opening day", "the winter market stall", "the marathon finish line",
          "the garden tomato record", "the science fair booth", "the wedding rehearsal dinner",
          "the choir tour bus", "the lantern night walk", "the chess club final"]  # fmt: skip


def build() -> tuple[Path, Path, dict]:
    images = sorted(p for p in (REPO / "sample_corpus/images").rglob("*.png"))
    rng = random.Random(0)
    picks = rng.sample(images, 30)
    truth: dict = {"keyword": [], "description": [], "name": []}
    named, unnamed = WORK / "named", WORK / "unnamed"
    if not (WORK / "truth.json").is_file():
        shutil.rmtree(WORK, ignore_errors=True)
        shutil.copytree(REPO / "sample_corpus/images", named / "drawings")
        (named / "tagged").mkdir()
        from PIL import Image

        for n, source in enumerate(picks[:15]):
            target = named / "tagged" / f"DSC_{4100 + n}.jpg"
            Image.open(source).convert("RGB").save(target, quality=90)
            subprocess.run(
                ["exiftool", "-q", "-overwrite_original", f"-XMP-dc:Subject={PLACES[n]}",
                 f"-XMP-dc:Subject={PEOPLE[n]}",
                 f"-XMP-lr:HierarchicalSubject=People|{PEOPLE[n]}", str(target)],
                check=True,
            )  # fmt: skip
            truth["keyword"] += [[PLACES[n], [str(target)]], [PEOPLE[n], [str(target)]]]
        lines = []
        for n, source in enumerate(picks[15:]):
            path = named / "drawings" / source.relative_to(REPO / "sample_corpus/images")
            lines.append({"image": str(path.relative_to(named)), "caption": EVENTS[n]})
            words = EVENTS[n].split()
            truth["description"].append([" ".join(words[-2:]), [str(path)]])
        (named / "descriptions.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
        names = defaultdict(list)
        for image in images:
            for word in re.split(r"[_\-.\d]+", image.stem.lower()):
                if len(word) >= 5:
                    names[word].append(image)
        unique = sorted(w for w, found in names.items() if len(found) == 1)
        for word in rng.sample(unique, 20):
            source = names[word][0]
            target = named / "drawings" / source.relative_to(REPO / "sample_corpus/images")
            truth["name"].append([word, [str(target)]])
        unnamed.mkdir(parents=True)
        mapping = {}
        for n, image in enumerate(images, 1):
            shutil.copy(image, unnamed / f"IMG_{n:04d}.png")
            mapping[f"IMG_{n:04d}.png"] = str(image.relative_to(REPO / "sample_corpus/images"))
        truth["unnamed"] = mapping
        (WORK / "truth.json").write_text(json.dumps(truth))
        for folder, extra in ((named, ["--descriptions", str(named / "descriptions.jsonl")]),
                              (unnamed, [])):  # fmt: skip
            subprocess.run(
                [sys.executable, "-m", "mmsearch", "index", str(folder), "--library",
                 str(folder) + "-lib", "--model", "lite0-muse-clipart-memory-jmdict", *extra],
                check=True, capture_output=True,
            )  # fmt: skip
    return named, unnamed, json.loads((WORK / "truth.json").read_text())


def scores(hits: list[str], relevant) -> tuple[float, float]:
    """(P@5, R@10); ``relevant`` tells a path's relevance."""
    p5 = sum(map(relevant, hits[:5])) / 5
    found = sum(map(relevant, hits[:10]))
    return p5, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--constants", default="10,30,60,100")
    args = parser.parse_args()
    named, unnamed, truth = build()
    descriptive = json.loads((REPO / "sample_corpus/queries.json").read_text())
    mapping = truth["unnamed"]
    setups = [("semantic", None), ("keyword", None)]
    setups += [("hybrid", int(c)) for c in args.constants.split(",")]
    table = defaultdict(dict)
    for mode, constant in setups:
        if constant:
            fusion.RRF_CONSTANT = constant
        label = f"hybrid k={constant}" if constant else mode
        with open_library(str(named) + "-lib", create=False) as lib:
            for kind in ("name", "keyword", "description"):
                p5s, r10s = [], []
                for query, targets in truth[kind]:
                    hits = [h.path for h in lib.search_text(query, k=10, mode=mode)]
                    p5, found = scores(hits, lambda p, t=targets: p in t)
                    p5s.append(p5)
                    r10s.append(found / len(targets))
                table[label][kind] = (sum(p5s) / len(p5s), sum(r10s) / len(r10s))
            for lang in ("en", "ja"):
                p5s = []
                for item in descriptive:
                    hits = [h.path for h in lib.search_text(item[lang], k=10, mode=mode)]
                    relevant = lambda p, e=item["expect"]: any(x in p for x in e)  # noqa: E731
                    p5s.append(scores(hits, relevant)[0])
                table[label][f"descriptive {lang}"] = (sum(p5s) / len(p5s), None)
        with open_library(str(unnamed) + "-lib", create=False) as lib:
            for lang in ("en", "ja"):
                p5s = []
                for item in descriptive:
                    hits = [h.path for h in lib.search_text(item[lang], k=10, mode=mode)]
                    original = [mapping.get(Path(h).name, "") for h in hits]
                    relevant = lambda p, e=item["expect"]: any(x in "/" + p for x in e)  # noqa: E731
                    p5s.append(scores(original, relevant)[0])
                table[label][f"unnamed {lang}"] = (sum(p5s) / len(p5s), None)
    kinds = list(next(iter(table.values())))
    print("P@5 (R@10 for single-target kinds)")
    print(f"{'setup':<14}" + "".join(f"{k:>20}" for k in kinds))
    for label, row in table.items():
        cells = []
        for kind in kinds:
            p5, r10 = row[kind]
            cells.append(f"{p5:.2f}" + (f" ({r10:.2f})" if r10 is not None else ""))
        print(f"{label:<14}" + "".join(f"{c:>20}" for c in cells))


if __name__ == "__main__":
    main()
