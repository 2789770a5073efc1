#!/bin/sh
# Reproduce the bundled lite0-muse-clipart heads (mmsearch/data/models/lite0-muse-clipart). See
# BENCHMARKS.md, "lite0-muse-clipart".
#   sudo apt-get install openclipart-png openclipart-svg   (Debian 1:0.18+dfsg-19)
#   sh scripts/train_lite0_muse_clipart.sh
set -e
python scripts/prepare_clipart.py data/clipart
mmsearch train data/clipart/train.jsonl --images-root /usr/share/openclipart --kind towers \
  --output data/lite0-muse-clipart --image-tower efficientnet-lite0 --text-tower use-multilingual-v3 \
  --dim 512 --views 1 --epochs 30 --batch-size 256 --lr 1e-3 --seed 0 \
  --val data/clipart/heldout.jsonl
mkdir -p mmsearch/data/models/lite0-muse-clipart
cp data/lite0-muse-clipart/heads.npz data/lite0-muse-clipart/towers_config.json \
  mmsearch/data/models/lite0-muse-clipart/
for split in heldout heldout-ja; do
  mmsearch eval data/clipart/$split.jsonl --images-root /usr/share/openclipart --model lite0-muse-clipart
done
