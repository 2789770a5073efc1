"""Where a model misses on the held-out tenth: Recall@10 in both directions by kind of caption.

    python scripts/heldout_misses.py [--model clipart-mini]

Groups each held-out caption by whether several held-out drawings share it, and whether some
training drawing has exactly that title (data/clipart/*.jsonl, from scripts/prepare_clipart.py).
Hits follow `mmsearch eval`: any drawing (or caption) with an equal caption counts.
"""

from __future__ import annotations

import argparse
import collections
import json
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from indexer.decode import decode_for_model
from mmsearch.encoders.base import OpenClipEncoder
from mmsearch.encoders.registry import resolve_model
from mmsearch.imaging.pictures import DEFAULT_MAX_PIXELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="clipart-mini")
    parser.add_argument("--data", default="data/clipart")
    args = parser.parse_args()

    encoder = OpenClipEncoder(resolve_model(args.model), device="cpu")
    data = Path(args.data)
    held = [json.loads(line) for line in (data / "heldout.jsonl").read_text().splitlines()]
    train = (data / "train.jsonl").read_text().splitlines()
    titles = {json.loads(line)["captions"][0] for line in train}
    decode = partial(decode_for_model, cfg=encoder.preprocess, max_pixels=DEFAULT_MAX_PIXELS)
    with ProcessPoolExecutor() as pool:
        decoded = list(pool.map(decode, [row["image"] for row in held]))
    kept = [
        (row["caption"], d.pixels)
        for row, d in zip(held, decoded, strict=True)
        if d.pixels is not None
    ]
    captions = [caption for caption, _ in kept]
    distinct = sorted(set(captions))
    similarity = (
        encoder.encode_texts(distinct) @ encoder.encode_images(np.stack([p for _, p in kept])).T
    )
    shared = collections.Counter(captions)

    def kind(caption: str) -> str:
        return ("shared" if shared[caption] > 1 else "unique") + (
            ", a training title" if caption in titles else ", unseen"
        )

    found = collections.defaultdict(lambda: ([], []))
    relevant = np.array(captions)[None, :] == np.array(distinct)[:, None]  # captions x images
    for query, caption in enumerate(distinct):  # text → image
        top = np.argsort(-similarity[query], kind="stable")[:10]
        found[kind(caption)][0].append(bool(relevant[query, top].any()))
    for image, caption in enumerate(captions):  # image → text
        top = np.argsort(-similarity[:, image], kind="stable")[:10]
        found[kind(caption)][1].append(bool(relevant[top, image].any()))
    print(f"{'held-out captions':<28}{'queries':>8}{'t→i R@10':>10}{'images':>8}{'i→t R@10':>10}")
    for name, (t2i, i2t) in sorted(found.items()):
        print(f"{name:<28}{len(t2i):>8}{np.mean(t2i):>10.3f}{len(i2t):>8}{np.mean(i2t):>10.3f}")


if __name__ == "__main__":
    main()
