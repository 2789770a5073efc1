"""The image tower before and after its inference rewrite, interleaved in one process.

    python bench/tower_rewrite.py [--reps 5] [--batch 32] [--tower efficientnet-lite0]

Times the tower alone (pooled features of random pictures, batch ``--batch``, two batches per
timing) as timm defines it, with its batch norms folded, and with SAME padding done without a
copy as well (``mmsearch/encoders/inference_network.py``), at the default number format of this
CPU and in fp32. Each repetition times every variant once, so they share the machine's state.
Prints images per second: the median and the range of the repetitions.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mmsearch.encoders.inference_network import fold_batch_norms, for_inference
from mmsearch.encoders.precision import image_precision
from mmsearch.encoders.tower_network import PooledFeatures
from mmsearch.encoders.towers import IMAGE_TOWERS, load_image_tower

VARIANTS = {"as timm defines it": lambda n: n, "batch norms folded": fold_batch_norms,
            "and SAME padding without a copy": for_inference}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tower", default="efficientnet-lite0")
    args = parser.parse_args()
    spec = IMAGE_TOWERS[args.tower]
    x = torch.rand(args.batch, 3, spec.size, spec.size) * 2 - 1
    x = x.contiguous(memory_format=torch.channels_last)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {spec.name}")
    for precision in dict.fromkeys([image_precision("auto", "cpu"), "fp32"]):
        towers = {}
        for name, rewrite in VARIANTS.items():
            tower = PooledFeatures(rewrite(load_image_tower(spec)), spec).eval()
            tower = tower.to(memory_format=torch.channels_last)
            if precision == "bf16":
                tower.cast_blocks(torch.bfloat16)
            towers[name] = tower
        rates = {name: [] for name in towers}
        with torch.inference_mode():
            for tower in towers.values():
                tower(x)  # warm up
            for _ in range(args.reps):
                for name, tower in towers.items():
                    started = time.perf_counter()
                    tower(x)
                    tower(x)
                    rates[name].append(2 * args.batch / (time.perf_counter() - started))
        for name, got in rates.items():
            print(f"{precision:5} {name:34} {statistics.median(got):7.1f} img/s "
                  f"({min(got):.0f}-{max(got):.0f})")  # fmt: skip


if __name__ == "__main__":
    main()
