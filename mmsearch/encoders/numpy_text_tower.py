"""Text queries without torch: a CLIP text tower exported once, then run in numpy.

A new text query from a cold process spends most of its time importing torch and open_clip
(4–5 s on a 2-core machine, against 0.6 s for everything else). A causal CLIP text tower is a
plain transformer, so for a query of a few tokens numpy does the same arithmetic. The library
keeps, in its folder, the text tower's fp32 weights as ``.npy`` files (memory-mapped when read)
with the tokenizer's merges; :func:`export` writes them only after checking that this module
reproduces open_clip on probe texts (the same tokens, and vectors to a cosine of 0.9999), and
only for the plain CLIP text tower it knows (LayerNorm, multi-head attention, GELU or QuickGELU
MLP, pooling at end-of-text). Anything else keeps using torch.

The tokenizer is CLIP's byte-pair encoding (as open_clip's ``SimpleTokenizer`` with its default
``lower`` cleaning): ftfy and HTML clean-up, whitespace folded, lower case, split by CLIP's
pattern, bytes mapped to unicode, merges applied by rank.
"""

from __future__ import annotations

import functools
import gzip
import html
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

from mmsearch.temporary import temporary_name

FORMAT = 1
PROBE_TEXTS = [
    "a red bicycle leaning on a wall",
    "Two dogs playing in the snow!",
    "café — «quoted» 123 &amp; emoji 🚲",
    "x " * 100,  # longer than any context: truncated with end-of-text last
]
_PATTERN = (
    r"""<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)
_ERF = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429, 0.3275911)


@functools.cache
def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible map from bytes to printable characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


class BpeTokenizer:
    """CLIP's tokenizer, torch-free: texts → (N, context_length) int64 token ids."""

    def __init__(self, merges_file: Path, context_length: int):
        import regex

        with gzip.open(merges_file) as f:
            lines = f.read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
        merges = [tuple(line.split()) for line in lines]
        symbols = list(_bytes_to_unicode().values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
        vocab += ["<start_of_text>", "<end_of_text>"]
        self.ids = {token: i for i, token in enumerate(vocab)}
        self.ranks = {merge: i for i, merge in enumerate(merges)}
        self.sot, self.eot = self.ids["<start_of_text>"], self.ids["<end_of_text>"]
        self.context_length = context_length
        self._pattern = regex.compile(_PATTERN, regex.IGNORECASE)
        self._cache = {"<start_of_text>": "<start_of_text>", "<end_of_text>": "<end_of_text>"}

    def _bpe(self, token: str) -> str:
        if token in self._cache:
            return self._cache[token]
        word = (*token[:-1], token[-1] + "</w>")
        while len(word) > 1:
            pairs = set(zip(word, word[1:], strict=False))
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        self._cache[token] = " ".join(word)
        return self._cache[token]

    def encode(self, text: str) -> list[int]:
        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        text = " ".join(text.split()).lower()
        to_unicode = _bytes_to_unicode()
        ids = []
        for token in self._pattern.findall(text):
            token = "".join(to_unicode[b] for b in token.encode("utf-8"))
            ids.extend(self.ids[piece] for piece in self._bpe(token).split(" "))
        return ids

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.context_length), np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot, *self.encode(text), self.eot][: self.context_length]
            ids[-1] = self.eot  # a truncated text still ends with end-of-text
            out[row, : len(ids)] = ids
        return out


class NumpyTextTower:
    """An exported text tower (see :func:`export`), ready to encode queries."""

    def __init__(self, folder: Path, meta: dict):
        load = functools.partial(np.load, mmap_mode="r")
        self.meta = meta
        self.tokenizer = BpeTokenizer(folder / "merges.txt.gz", meta["context_length"])
        # Plain ndarray views of the maps: numpy.memmap results are slow subclasses.
        self.w = {name: np.asarray(load(folder / f"{name}.npy")) for name in meta["arrays"]}

    @classmethod
    def open(cls, folder: Path, weights: str) -> NumpyTextTower | None:
        """The tower exported in ``folder`` for the weights ``weights``; None when there is none
        (or it was written for other weights, or by another format)."""
        try:
            meta = json.loads((Path(folder) / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        if meta.get("format") != FORMAT or meta.get("weights") != weights:
            return None
        try:
            return cls(Path(folder), meta)
        except (OSError, ValueError, KeyError):
            return None

    def encode(self, texts: list[str]) -> np.ndarray:
        """Texts → N x dim float32 unit vectors, as ``encode_text(normalize=True)``."""
        tokens = self.tokenizer(texts)
        return np.stack([self._encode_one(row) for row in tokens])

    def _encode_one(self, tokens: np.ndarray) -> np.ndarray:
        w, meta = self.w, self.meta
        end = int(np.argmax(tokens == self.tokenizer.eot))  # CLIP pools at end-of-text
        tokens = tokens[: end + 1]  # causal: nothing after end-of-text changes it
        length, heads = len(tokens), meta["heads"]
        x = w["token_embedding"][tokens] + w["positional_embedding"][:length]
        mask = np.triu(np.full((length, length), -np.inf, np.float32), 1)
        for layer in range(meta["layers"]):
            p = f"{layer}."
            h = _layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"], meta["eps"])
            q, k, v = np.split(h @ w[p + "in_proj_weight"].T + w[p + "in_proj_bias"], 3, axis=-1)
            q, k, v = (t.reshape(length, heads, -1).transpose(1, 0, 2) for t in (q, k, v))
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1]) + mask
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            attended = (scores / scores.sum(axis=-1, keepdims=True)) @ v
            attended = attended.transpose(1, 0, 2).reshape(length, -1)
            x = x + attended @ w[p + "out_proj.weight"].T + w[p + "out_proj.bias"]
            h = _layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"], meta["eps"])
            h = h @ w[p + "c_fc.weight"].T + w[p + "c_fc.bias"]
            h = _quick_gelu(h) if meta["activation"] == "quick_gelu" else _gelu(h)
            x = x + h @ w[p + "c_proj.weight"].T + w[p + "c_proj.bias"]
        x = _layer_norm(x[end], w["ln_final.weight"], w["ln_final.bias"], meta["eps"])
        x = x @ w["text_projection"]
        return (x / np.linalg.norm(x)).astype(np.float32)


def _layer_norm(x, weight, bias, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _gelu(x):
    """x·Φ(x) with erf from Abramowitz & Stegun 7.1.26 (error under 1.5e-7: exact in fp32)."""
    z = np.abs(x) / math.sqrt(2.0)  # Python floats keep float32 arrays in float32 (NEP 50)
    t = 1.0 / (1.0 + _ERF[5] * z)
    poly = t * (_ERF[0] + t * (_ERF[1] + t * (_ERF[2] + t * (_ERF[3] + t * _ERF[4]))))
    erf = np.sign(x) * (1.0 - poly * np.exp(-z * z))
    return 0.5 * x * (1.0 + erf)


def _quick_gelu(x):
    return x / (1.0 + np.exp(-1.702 * x))


def export(model, tokenizer, folder: Path, weights: str) -> bool:
    """Write ``model``'s text tower (an fp32 open_clip CLIP) to ``folder`` for torch-free
    queries, if this module reproduces it; returns whether it did. The folder is replaced
    whole (written beside it, then renamed)."""
    from mmsearch.encoders.text_tower import plain_text_tower

    tower = plain_text_tower(model) if _plain_tokenizer(tokenizer) else None
    if tower is None:
        return False
    arrays = {name: t.float().cpu().numpy() for name, t in tower.weights.items()}
    meta = {
        "format": FORMAT,
        "weights": weights,
        "context_length": int(tokenizer.context_length),
        "layers": tower.layers,
        "heads": tower.heads,
        "eps": tower.eps,
        "activation": tower.activation,
        "arrays": sorted(arrays),
    }
    folder = Path(folder)
    staging = temporary_name(folder)  # not mkdtemp's private 0700: others may serve the library
    staging.mkdir()
    try:
        for name, array in arrays.items():
            np.save(staging / f"{name}.npy", array)
        shutil.copy(_merges_file(), staging / "merges.txt.gz")
        (staging / "meta.json").write_text(json.dumps(meta))
        if not _reproduces(NumpyTextTower(staging, meta), model, tokenizer):
            return False
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _plain_tokenizer(tokenizer) -> bool:
    """Whether ``tokenizer`` is the CLIP BPE tokenizer :class:`BpeTokenizer` reimplements."""
    from open_clip.tokenizer import SimpleTokenizer

    return (
        isinstance(tokenizer, SimpleTokenizer)
        and tokenizer.clean_fn.__name__ == "_clean_lower"
        and tokenizer.reduction_fn is None
        and len(tokenizer.encoder) == 49408
    )


def _reproduces(tower: NumpyTextTower, model, tokenizer) -> bool:
    import torch

    from mmsearch.encoders.text_tower import encode_text_truncated

    expected = tokenizer(PROBE_TEXTS)
    if not np.array_equal(tower.tokenizer(PROBE_TEXTS), expected.numpy()):
        return False
    with torch.inference_mode():
        reference = encode_text_truncated(model, expected).numpy()
    return bool((tower.encode(PROBE_TEXTS) * reference).sum(axis=1).min() >= 0.9999)


def _merges_file() -> Path:
    from open_clip.tokenizer import default_bpe

    return Path(default_bpe())
