"""Training a towers model: locked pretrained towers, two heads trained contrastively (LiT).

The towers' features come from :mod:`mmsearch.train.lit_features` (computed once, cached); each step
draws a batch of pictures, one view of each (the plain one or an augmented one) and one of its
captions, and minimises CLIP's symmetric InfoNCE loss over the batch with a learnt temperature.
A validation slice carved from the training collection (never the held-out set) is scored after
every epoch; the model folder keeps the latest epoch within one standard error of the best
(Breiman's one-standard-error rule). The heads then get a memory of the training pictures
(:mod:`mmsearch.train.memory_fit`), its readouts chosen on the same slice.

Everything random flows from one seeded ``torch.Generator`` whose state is in the checkpoint
written after every epoch, so a resumed run ends exactly where an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch  # a training module: torch is what it runs on

from mmsearch.encoders.towers_encoder import Heads, TowersConfig, TowersEncoder, write_model
from mmsearch.errors import TrainingError
from mmsearch.train.checkpoints import resume_checkpoint, save_checkpoint
from mmsearch.train.evaluation import retrieval_scores
from mmsearch.train.lit_features import image_features, text_features
from mmsearch.train.memory_fit import fit_memory
from mmsearch.train.open_clip_training import TrainingSample, TrainResult

CHECKPOINT = "lit_checkpoint.pt"


@dataclass(frozen=True)
class LitConfig:
    """How to train a towers model. Stored in the checkpoint; a resume must use the same."""

    image_tower: str = "efficientnet-lite0"
    text_tower: str = "use-multilingual-v3"
    dim: int = 512
    image_hidden: int = 0  # 0: a linear image head
    image_size: int = 0  # 0: the image tower's own input size
    epochs: int = 30
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.5
    dropout: float = 0.2  # on the heads' inputs: the features are many and the pictures few
    temperature: float = 0.07  # the initial one; it is learnt
    views: int = 3  # augmented views per picture, besides the plain one
    val_fraction: float = 0.05  # of the training pictures, held back to choose the epoch
    memory: bool = True  # a memory of the training pictures (needs the validation slice)
    seed: int = 0


def split_validation(
    samples: Sequence[TrainingSample], fraction: float
) -> tuple[list[TrainingSample], list[TrainingSample]]:
    """(training, validation): a fixed slice by a hash of each image path, so a collection that
    grows keeps its old validation pictures in validation."""
    cut = int(round(fraction * 10_000))
    train, val = [], []
    for sample in samples:
        bucket = int(hashlib.sha1(sample.image.encode()).hexdigest(), 16) % 10_000
        (val if bucket < cut else train).append(sample)
    if fraction > 0 and (len(val) < 2 or not train):
        raise TrainingError(
            f"a validation slice of {fraction:.0%} leaves {len(val)} of {len(samples)} pictures "
            "to validate on; give more pictures or a larger --val-fraction"
        )
    return train, val


def train_towers(
    samples: Sequence[TrainingSample],
    output_dir: str | Path,
    config: LitConfig = LitConfig(),
    *,
    workers: int = 0,
    resume: bool = True,
    stop_after_epoch: int | None = None,
    log: Callable[[str], None] = lambda line: None,
    on_skip: Callable[[str, str], None] = lambda path, why: None,
) -> TrainResult:
    """Train the heads of a towers model and write its model folder to ``output_dir``.

    Raises:
        TrainingError: no usable pictures, or a checkpoint of another recipe or collection.

    One loop on purpose: the order in which it draws from its random generators is what makes a
    resumed run repeat an uninterrupted one exactly.
    """
    started = time.time()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    towers = TowersConfig(
        image_tower=config.image_tower,
        text_tower=config.text_tower,
        dim=config.dim,
        image_hidden=config.image_hidden,
        image_size=config.image_size,
    )
    encoder = TowersEncoder(None, towers_only=towers)
    train_set, val_set = split_validation(samples, config.val_fraction)
    ordered = list(train_set) + list(val_set)
    features, kept = image_features(
        [s.image for s in ordered],
        encoder,
        views=config.views,
        seed=config.seed,
        cache_dir=output_dir / "cache",
        workers=workers,
        on_skip=on_skip,
        progress=lambda done: log(f"image features: {done} of {len(ordered)} pictures"),
    )
    kept_train = [i for i in range(len(kept)) if kept[i] < len(train_set)]
    kept_val = [i for i in range(len(kept)) if kept[i] >= len(train_set)]
    if len(kept_train) < 2:
        raise TrainingError("fewer than two usable training pictures")
    texts = sorted({c for s in ordered for c in s.captions})
    text_vectors = text_features(texts, encoder, cache_dir=output_dir / "cache")
    position = {t: i for i, t in enumerate(texts)}
    captions = [[position[c] for c in ordered[kept[i]].captions] for i in range(len(kept))]

    train_views = torch.from_numpy(features[:, kept_train])
    mean = train_views[0].mean(0)
    std = train_views[0].std(0).clamp_min(1e-6)
    torch.manual_seed(config.seed)  # the heads' initial weights
    model = _HeadsModule(features.shape[2], text_vectors.shape[1], config)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    steps_per_epoch = max(1, len(kept_train) // config.batch_size)
    total = config.epochs * steps_per_epoch
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict] = []
    best = {"score": -1.0, "top": -1.0, "epoch": 0, "state": None}
    start_epoch = 0
    fingerprint = [asdict(config), [ordered[i].image for i in kept]]
    checkpoint = output_dir / CHECKPOINT
    if resume and checkpoint.exists():
        state = resume_checkpoint(
            checkpoint,
            model,
            optimizer,
            generator,
            same_run=lambda state: state["fingerprint"] == fingerprint,
            advice="pass the same options and captions file to resume, or --no-resume to start "
            "again",
        )
        start_epoch, history, best = state["epoch"], state["history"], state["best"]

    all_views = torch.from_numpy(features)
    text_tensor = torch.from_numpy(text_vectors)
    train_index = torch.tensor(kept_train)
    for epoch in range(start_epoch, config.epochs):
        # Dropout draws from torch's global generator: seeded per epoch, a resumed epoch
        # draws the masks the uninterrupted one drew.
        torch.manual_seed(config.seed * 1_000_003 + epoch)
        model.train()
        order = train_index[torch.randperm(len(kept_train), generator=generator)]
        loss_sum = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            view = torch.randint(0, config.views + 1, (len(idx),), generator=generator)
            pick = torch.rand(len(idx), generator=generator).tolist()
            chosen = [
                captions[i][int(p * len(captions[i]))]
                for i, p in zip(idx.tolist(), pick, strict=True)
            ]
            images = (all_views[view, idx] - mean) / std
            _set_lr(optimizer, epoch * steps_per_epoch + step, total, config)
            loss = model.loss(images, text_tensor[chosen])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item()
        record = {"epoch": epoch + 1, "loss": round(loss_sum / steps_per_epoch, 4)}
        if kept_val:
            scores = _validate(
                model, all_views[0, kept_val], mean, std, text_tensor, captions, kept_val
            )
            record |= scores
            score = scores["val_t2i_R@10"] + scores["val_i2t_R@10"]
            noise = _standard_error(scores, len(kept_val))
        else:
            score, noise = float(epoch), 0.0  # no validation slice: the last epoch
        top = max(score, best.get("top", -1.0))
        # The one-standard-error rule: the latest epoch whose score is within the validation
        # slice's noise of the best so far. A slice of a few hundred pictures scores an
        # epoch to ±0.02; taking its single best picks an undertrained epoch by chance.
        if score >= top - noise:
            # A copy: state_dict() holds the live parameters, which later epochs change.
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best = {"score": score, "epoch": epoch + 1, "state": state}
        best["top"] = top
        history.append(record)
        log(str(record))
        state = {"epoch": epoch + 1, "history": history, "best": best, "fingerprint": fingerprint}
        save_checkpoint(checkpoint, model, optimizer, generator, state)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            break

    model.load_state_dict(best["state"])
    towers = dataclasses.replace(towers, logit_scale=float(model.logit_scale.detach().exp()))
    heads = model.heads(mean.numpy(), std.numpy())
    chosen = {"best_epoch": best["epoch"]}
    if config.memory and kept_val:
        fitted = fit_memory(
            heads,
            features[0, kept_train],
            [captions[i] for i in kept_train],
            text_vectors,
            features[0, kept_val],
            [captions[i] for i in kept_val],
            log=log,
        )
        heads = fitted.heads
        towers = dataclasses.replace(
            towers, image_memory=fitted.image_memory, text_memory=fitted.text_memory
        )
        chosen |= fitted.scores
    write_model(output_dir, towers, heads)
    return TrainResult(
        output_dir=str(output_dir),
        epochs=len(history),
        steps=len(history) * steps_per_epoch,
        seconds=round(time.time() - started, 1),
        final_loss=history[-1]["loss"] if history else math.nan,
        history=history + [chosen],
    )


def _set_lr(optimizer, step: int, total: int, config: LitConfig) -> None:
    warmup = max(1, total // 10)
    if step < warmup:
        lr = config.lr * (step + 1) / warmup
    else:
        lr = 0.5 * config.lr * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    for group in optimizer.param_groups:
        group["lr"] = lr


def _validate(model, images, mean, std, texts, captions, kept_val) -> dict:
    model.eval()
    with torch.no_grad():
        image_vectors = model.image((images - mean) / std).numpy()
        query = [captions[i][0] for i in kept_val]  # the first caption: the title
        distinct = sorted(set(query))
        text_vectors = model.text(texts[distinct]).numpy()
    scores = retrieval_scores(image_vectors, query, text_vectors, distinct)
    return {
        "val_t2i_R@10": round(scores.text_to_image["R@10"], 4),
        "val_i2t_R@10": round(scores.image_to_text["R@10"], 4),
    }


def _standard_error(scores: dict, n: int) -> float:
    """The standard error of the sum of the two recalls over ``n`` validation pictures."""
    variance = sum(p * (1 - p) / n for p in scores.values())
    return math.sqrt(variance)


class _HeadsModule(torch.nn.Module):
    """The two heads and the temperature, in torch while training (:class:`Heads` after)."""

    def __init__(self, image_features: int, text_features: int, config: LitConfig):
        super().__init__()
        drop = config.dropout
        layers = [torch.nn.Dropout(drop), torch.nn.Linear(image_features, config.dim)]
        if config.image_hidden:
            layers = [
                torch.nn.Dropout(drop),
                torch.nn.Linear(image_features, config.image_hidden),
                torch.nn.GELU(approximate="tanh"),  # what Heads computes in numpy
                torch.nn.Dropout(drop),
                torch.nn.Linear(config.image_hidden, config.dim),
            ]
        self.image_head = torch.nn.Sequential(*layers)
        self.text_head = torch.nn.Sequential(
            torch.nn.Dropout(drop), torch.nn.Linear(text_features, config.dim)
        )
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / config.temperature)))

    def image(self, x):
        return torch.nn.functional.normalize(self.image_head(x), dim=-1)

    def text(self, x):
        return torch.nn.functional.normalize(self.text_head(x), dim=-1)

    def loss(self, images, texts):
        scale = self.logit_scale.exp().clamp(max=100)
        logits = scale * self.image(images) @ self.text(texts).T
        labels = torch.arange(len(images))
        return (
            torch.nn.functional.cross_entropy(logits, labels)
            + torch.nn.functional.cross_entropy(logits.T, labels)
        ) / 2

    def heads(self, mean: np.ndarray, std: np.ndarray) -> Heads:
        arrays = {"image_mean": mean, "image_std": std}
        linear = [m for m in self.image_head if isinstance(m, torch.nn.Linear)]
        for n, layer in enumerate(linear, start=1):
            arrays[f"image_w{n}"] = layer.weight.detach().T.numpy()
            arrays[f"image_b{n}"] = layer.bias.detach().numpy()
        text = self.text_head[1]
        arrays["text_w1"] = text.weight.detach().T.numpy()
        arrays["text_b1"] = text.bias.detach().numpy()
        return Heads(arrays)
