"""Write the clipart-mini training and held-out caption files from Debian's Open Clip Art packages.

    sudo apt-get install openclipart-png openclipart-svg
    python scripts/prepare_clipart.py data/clipart

Writes ``train.jsonl`` (nine tenths: every image with several captions: title, title with
description, keywords, category path), ``heldout.jsonl`` (the held-out tenth that
sample_corpus is drawn from: one caption each, its title, or its category path when untitled)
and ``heldout-ja.jsonl`` (the same with each caption in Japanese, from the hand translation in
``heldout_titles_ja.tsv`` beside this script).
"""

from __future__ import annotations

import json
import sys
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openclipart import PNG_ROOT, is_held_out, iter_clipart  # noqa: E402


def training_captions(item) -> list[str]:
    category = item.category.replace("/", " ").replace("_", " ")
    # The title twice: it is what people search for (and what evaluation asks), so it is drawn
    # twice as often as the description, keyword and category captions.
    captions = [item.caption, item.caption]
    if item.description and item.description.lower() != item.title.lower():
        captions.append(f"{item.title}: {item.description}" if item.title else item.description)
    if item.keywords:
        captions.append(", ".join(item.keywords))
    captions.append(f"{item.caption}, {category}" if item.title else category)
    return [c for c in captions if c]


def japanese_titles() -> dict[str, str]:
    """English held-out caption → its Japanese translation (control characters, which a few
    mis-encoded titles carry, are left out of the key)."""
    table = Path(__file__).resolve().parent / "heldout_titles_ja.tsv"
    rows = (line.split("\t") for line in table.read_text(encoding="utf-8").splitlines())
    return {_printable(en): ja for en, ja in rows}


def _printable(text: str) -> str:
    return "".join(c for c in " ".join(text.split()) if unicodedata.category(c) != "Cc")


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "heldout": 0, "copies_of_heldout_left_out": 0}
    items = list(iter_clipart())
    # The library files some drawings under two categories; a copy of a held-out drawing in the
    # training set would leak it, so those copies stay out of training too.
    held_names = {Path(i.relative_path).name for i in items if is_held_out(i.relative_path)}
    japanese = japanese_titles()
    with (
        open(out / "train.jsonl", "w") as train,
        open(out / "heldout.jsonl", "w") as held,
        open(out / "heldout-ja.jsonl", "w", encoding="utf-8") as held_ja,
    ):
        for item in items:
            image = str(PNG_ROOT / item.relative_path)
            if is_held_out(item.relative_path):
                held.write(json.dumps({"image": image, "caption": item.caption}) + "\n")
                row = {"image": image, "caption": japanese[_printable(item.caption)]}
                held_ja.write(json.dumps(row, ensure_ascii=False) + "\n")
                counts["heldout"] += 1
            elif Path(item.relative_path).name in held_names:
                counts["copies_of_heldout_left_out"] += 1
            else:
                row = {"image": image, "captions": training_captions(item)}
                train.write(json.dumps(row) + "\n")
                counts["train"] += 1
    print(json.dumps(counts))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/clipart")
