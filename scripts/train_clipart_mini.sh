#!/bin/sh
# Reproduce the bundled clipart-mini model (mmsearch/models/clipart-mini). See BENCHMARKS.md.
#   sudo apt-get install openclipart-png openclipart-svg   (Debian 1:0.18+dfsg-19)
#   sh scripts/train_clipart_mini.sh
set -e
python scripts/prepare_clipart.py data/clipart
mmsearch train data/clipart/train.jsonl --output data/clipart-mini --arch clipart-mini \
  --val data/clipart/heldout.jsonl --val-every 4 --epochs 24 --batch-size 128 --lr 2e-3 \
  --warmup 100 --seed 0
mkdir -p mmsearch/models/clipart-mini
cp data/clipart-mini/open_clip_config.json data/clipart-mini/open_clip_pytorch_model.bin \
  mmsearch/models/clipart-mini/
mmsearch eval data/clipart/heldout.jsonl --model clipart-mini
