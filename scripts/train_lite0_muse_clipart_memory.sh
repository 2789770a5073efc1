#!/bin/sh
# Reproduce the bundled lite0-muse-clipart-memory model (mmsearch/data/models/
# lite0-muse-clipart-memory): the heads and their memory of the training drawings. See
# BENCHMARKS.md, "lite0-muse-clipart". With --no-memory the same command gives heads alone, as
# the earlier lite0-muse-clipart preset has them.
#   sudo apt-get install openclipart-png openclipart-svg   (Debian 1:0.18+dfsg-19)
#   sh scripts/train_lite0_muse_clipart_memory.sh
set -e
python scripts/prepare_clipart.py data/clipart
mmsearch train data/clipart/train.jsonl --images-root /usr/share/openclipart --kind towers \
  --output data/lite0-muse-clipart-memory --image-tower efficientnet-lite0 \
  --text-tower use-multilingual-v3 --dim 512 --views 1 --epochs 30 --batch-size 256 --lr 1e-3 \
  --seed 0 --val data/clipart/heldout.jsonl
mkdir -p mmsearch/data/models/lite0-muse-clipart-memory
cp data/lite0-muse-clipart-memory/heads.npz data/lite0-muse-clipart-memory/towers_config.json \
  mmsearch/data/models/lite0-muse-clipart-memory/
for split in heldout heldout-ja; do
  mmsearch eval data/clipart/$split.jsonl --images-root /usr/share/openclipart \
    --model lite0-muse-clipart-memory
done
