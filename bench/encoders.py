"""CPU throughput of each model preset: images/s through the image tower, ms per text query.

Through mmsearch's encoder, as indexing and queries use it: images in fp32 and at the default
precision (the tower's body in bf16 on CPUs with native bf16), and a short text query at full
length as loaded (open_clip's ``encode_text``) and the default way (int8 projections on x86, else
cut after end-of-text, bf16 where native).

    python bench/encoders.py [--batch 32] [--images 64] [--presets a,b,...]

Pretrained weights cannot be downloaded here, so each architecture is built with random weights:
speed does not depend on the weights' values. All presets are measured in one run, so their
ratios are comparable even on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def measure(spec, batch: int, images: int, queries: int = 20) -> dict:
    import dataclasses

    from mmsearch.encoders.base import OpenClipEncoder
    from mmsearch.encoders.towers_encoder import TowersEncoder

    # Random weights (no pretrained tag): speed does not depend on their values. A towers model
    # is measured with its real, bundled weights.
    spec = dataclasses.replace(spec, pretrained=None)
    kind = TowersEncoder if spec.kind == "towers" else OpenClipEncoder
    encoders = {
        precision: kind(spec, device="cpu", batch_size=batch, image_precision=precision)
        for precision in ("fp32", "auto")
    }
    size = encoders["auto"].preprocess.size
    size = size[0] if isinstance(size, (tuple, list)) else size
    pictures = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), np.uint8)
    rates = {}
    for precision, encoder in encoders.items():
        encoder.encode_images(pictures[:2])  # loads the model
        started = time.perf_counter()
        done = 0
        while done < images:
            encoder.encode_images(pictures)
            done += batch
        rates[precision] = round(done / (time.perf_counter() - started), 1)

    def p50_ms(encode, text: str) -> float:
        encode(text)
        times = []
        for n in range(queries):
            t = time.perf_counter()
            encode(f"{text} {n}")  # the shipped path caches nothing, but be sure
            times.append(time.perf_counter() - t)
        return round(1000 * float(np.median(times)), 1)

    encoder = encoders["auto"]
    query = "a red bicycle"
    text_ms = p50_ms(lambda t: encoder.encode_texts([t]), query)
    if spec.kind == "towers":
        full_ms, tower = text_ms, "numpy"
    else:
        model, tokenizer = encoder._model, encoder._tokenizer
        with torch.inference_mode():
            full_ms = p50_ms(lambda t: model.encode_text(tokenizer([t]), normalize=True), query)
        tower = "int8" if encoder._int8_text else "truncated" if encoder._truncate else "full"
    return {
        "preset": spec.name,
        "arch": spec.arch.split("/")[-1],
        "input_px": size,
        "images_per_s_fp32": rates["fp32"],
        "images_per_s": rates["auto"],
        "text_ms_full": full_ms,
        "text_ms": text_ms,
        "text_tower": tower,
        "imagenet_zero_shot": spec.imagenet_zero_shot,
    }


def main() -> None:
    from mmsearch.encoders.registry import list_models

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
    print(f"{'preset':<18}{'px':>5}{'img/s fp32':>11}{'img/s':>8}{'text ms full':>13}"
          f"{'text ms':>9}  {'tower':<10}{'IN-1k':>6}")  # fmt: skip
    for r in rows:
        if "error" in r:
            print(f"{r['preset']:<18} not measured: {r['error']}")
            continue
        zs = f"{r['imagenet_zero_shot']:.3f}" if r["imagenet_zero_shot"] else "-"
        print(
            f"{r['preset']:<18}{r['input_px']:>5}{r['images_per_s_fp32']:>11}"
            f"{r['images_per_s']:>8}{r['text_ms_full']:>13}{r['text_ms']:>9}"
            f"  {r['text_tower']:<10}{zs:>6}"
        )


if __name__ == "__main__":
    main()
