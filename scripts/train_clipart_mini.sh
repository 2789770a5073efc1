#!/bin/sh
# Reproduce the bundled clipart-mini model (mmsearch/data/models/clipart-mini). See BENCHMARKS.md.
#   sudo apt-get install openclipart-png openclipart-svg   (Debian 1:0.18+dfsg-19)
#   sh scripts/train_clipart_mini.sh
set -e
python scripts/prepare_clipart.py data/clipart
# Stage 1: 24 epochs from scratch.
mmsearch train data/clipart/train.jsonl --images-root /usr/share/openclipart --output data/clipart-mini --arch clipart-mini \
  --val data/clipart/heldout.jsonl --val-every 4 --epochs 24 --batch-size 128 --lr 2e-3 \
  --warmup 100 --seed 0 --precision fp32  # as the bundled model was trained
# Stage 2: a warm restart, 12 more epochs from stage 1 at a quarter of the learning rate.
mmsearch train data/clipart/train.jsonl --images-root /usr/share/openclipart --output data/clipart-mini-2 --arch clipart-mini \
  --init data/clipart-mini --val data/clipart/heldout.jsonl --val-every 4 --epochs 12 \
  --batch-size 128 --lr 5e-4 --warmup 20 --seed 1 --precision fp32
mkdir -p mmsearch/data/models/clipart-mini
cp data/clipart-mini-2/open_clip_config.json data/clipart-mini-2/open_clip_pytorch_model.bin \
  mmsearch/data/models/clipart-mini/
mmsearch eval data/clipart/heldout.jsonl --images-root /usr/share/openclipart --model clipart-mini
