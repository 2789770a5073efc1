"""CPU throughput of each model preset: images/s through the image tower, ms per text query.

    python bench/encoders.py [--batch 32] [--images 64] [--presets a,b,...]

Pretrained weights cannot be downloaded here, so each architecture is built with random weights:
speed does not depend on the weights' values. All presets are measured in one run, so their
ratios are comparable even on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

import numpy as np
import torch


def measure(spec, batch: int, images: int, queries: int = 20) -> dict:
    import open_clip

    from mmsearch.models import register_open_clip_configs
    from mmsearch.text_tower import can_truncate, encode_text_truncated

    register_open_clip_configs()
    # Random weights (no pretrained tag): speed does not depend on their values.
    model = open_clip.create_model(spec.arch)
    if spec.reparameterize:
        from timm.utils.model import reparameterize_model

        model = reparameterize_model(model)
    model.eval()
    tokenizer = open_clip.get_tokenizer(spec.arch)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    pixels = torch.randn(batch, 3, size, size)
    with torch.inference_mode():
        model.encode_image(pixels[:2])
        started = time.perf_counter()
        done = 0
        while done < images:
            model.encode_image(pixels)
            done += batch
        image_rate = done / (time.perf_counter() - started)
        tokens = tokenizer(["a red bicycle leaning on a wall"])

        def p50_ms(encode) -> float:
            encode(tokens)
            times = []
            for _ in range(queries):
                t = time.perf_counter()
                encode(tokens)
                times.append(time.perf_counter() - t)
            return round(1000 * float(np.median(times)), 1)

        full_ms = p50_ms(lambda t: model.encode_text(t, normalize=True))
        cut_ms = p50_ms(partial(encode_text_truncated, model)) if can_truncate(model) else None
    return {
        "preset": spec.name,
        "arch": spec.arch.split("/")[-1],
        "input_px": size,
        "images_per_s": round(image_rate, 1),
        "text_ms_full": full_ms,
        "text_ms_cut_after_eot": cut_ms,
        "imagenet_zero_shot": spec.imagenet_zero_shot,
    }


def main() -> None:
    from mmsearch.models import list_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--presets", default="")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    wanted = set(filter(None, args.presets.split(",")))
    rows = []
    for spec in list_models():
        if wanted and spec.name not in wanted:
            continue
        try:
            rows.append(measure(spec, args.batch, args.images))
        except Exception as exc:  # a preset whose extra package is missing: report, go on
            rows.append({"preset": spec.name, "error": f"{type(exc).__name__}: {exc}"[:200]})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'preset':<18}{'px':>5}{'img/s':>9}{'text ms':>9}{'cut ms':>8}{'IN-1k':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['preset']:<18} not measured: {r['error']}")
            continue
        zs = f"{r['imagenet_zero_shot']:.3f}" if r["imagenet_zero_shot"] else "-"
        print(
            f"{r['preset']:<18}{r['input_px']:>5}{r['images_per_s']:>9}"
            f"{r['text_ms_full']:>9}{str(r['text_ms_cut_after_eot'] or '-'):>8}{zs:>8}"
        )


if __name__ == "__main__":
    main()
