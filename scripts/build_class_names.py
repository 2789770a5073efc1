"""Write a towers model folder's class names (``classes.npz``, :mod:`mmsearch.train.class_names`)
and point its config at them, with the readout that scripts/choose_class_readout.py chose.

    python scripts/build_class_names.py mmsearch/data/models/lite0-muse-clipart-memory-jmdict \
        --k 5 --temperature 2 --weight 1
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mmsearch.encoders.memory import Readout  # noqa: E402
from mmsearch.encoders.towers_encoder import Heads, TowersConfig  # noqa: E402
from mmsearch.train.class_names import class_arrays, write_classes  # noqa: E402

CLASSES_FILE = "classes.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a towers model folder")
    parser.add_argument("--k", type=int, required=True)
    parser.add_argument("--temperature", type=float, required=True)
    parser.add_argument("--weight", type=float, required=True)
    args = parser.parse_args()
    config = TowersConfig.read(args.folder)
    plain = dataclasses.replace(config, classes="", class_memory=Readout())
    heads = Heads.read(args.folder / config.heads, plain)
    write_classes(args.folder / CLASSES_FILE, class_arrays(config, heads))
    readout = Readout(k=args.k, temperature=args.temperature, weight=args.weight)
    dataclasses.replace(config, classes=CLASSES_FILE, class_memory=readout).write(args.folder)
    print(f"{args.folder / CLASSES_FILE}: {readout}")


if __name__ == "__main__":
    main()
