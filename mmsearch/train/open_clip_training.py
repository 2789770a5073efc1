"""Contrastive training of an open_clip model on captioned images (CLIP's own recipe, small).

Pictures are decoded once into memory at a little over the model's input size; each step draws a
random crop and flip of each picture and one of its captions, and minimises the symmetric InfoNCE
loss over the batch. Everything random flows from one seeded ``torch.Generator`` whose state is
in the checkpoint, so a resumed run continues exactly as an uninterrupted one would.

The result is a model folder in open_clip's layout (``open_clip_config.json`` + fp16 weights),
usable anywhere a ``--model`` is taken.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mmsearch.encoders.registry import register_open_clip_configs
from mmsearch.errors import ImageError, TrainingError
from mmsearch.imaging.pictures import open_picture
from mmsearch.imaging.preprocess import PreprocessConfig, fit_to_model, to_model_tensor
from mmsearch.train.checkpoints import resume_checkpoint, save_checkpoint

CHECKPOINT = "checkpoint.pt"
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_pytorch_model.bin"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# What checkpoints written before a TrainConfig field existed did, for resuming them.
_BEFORE_FIELDS_EXISTED = {"precision": "fp32"}


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Stored in the checkpoint; a resumed run must use the same values."""

    arch: str = "clipart-mini"  # an open_clip architecture (ours: mmsearch/data/model_configs)
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    seed: int = 0
    crop_margin: float = 0.15  # pictures are kept this much larger than the input for crops
    flip: bool = True
    init: str | None = None  # a --model value to fine-tune from instead of training from scratch
    # "bf16": forward passes under bf16 autocast (weights, optimizer and loss stay fp32);
    # "auto" is resolved when training starts: bf16 on CPUs with native bf16, else fp32.
    precision: str = "auto"


@dataclass
class TrainingSample:
    image: str
    captions: list[str]


@dataclass
class TrainResult:
    output_dir: str
    epochs: int
    steps: int
    seconds: float
    final_loss: float
    history: list[dict]


def load_pictures(
    samples: Sequence[TrainingSample], size: int, *, on_skip: Callable[[str, str], None]
) -> tuple[np.ndarray, list[TrainingSample]]:
    """Decode every training picture once (NxSxSx3 uint8, S = size); unusable ones are skipped."""
    cfg = PreprocessConfig(size=size, mean=CLIP_MEAN, std=CLIP_STD)
    pictures, kept = [], []
    for sample in samples:
        try:
            picture = open_picture(sample.image, min_size=size).image
        except ImageError as exc:
            on_skip(sample.image, str(exc))
            continue
        pictures.append(fit_to_model(picture, cfg))
        kept.append(sample)
    if not kept:
        raise TrainingError("no usable training images")
    return np.stack(pictures), kept


def _resolve_precision(precision: str) -> str:
    if precision not in ("auto", "fp32", "bf16"):
        raise TrainingError(f"precision {precision!r}: use auto, fp32 or bf16")
    if precision != "auto":
        return precision
    from mmsearch.encoders.precision import native_bf16

    return "bf16" if native_bf16() else "fp32"


def train(
    samples: Sequence[TrainingSample],
    output_dir: str | Path,
    config: TrainConfig = TrainConfig(),
    *,
    pictures: np.ndarray | None = None,
    validate: Callable[[object], dict] | None = None,
    validate_every: int = 1,
    progress: bool = False,
    resume: bool = True,
    stop_after_epoch: int | None = None,
) -> TrainResult:
    """Train (or fine-tune) a model and write it to ``output_dir`` as an open_clip model folder.

    Args:
        samples: images with one or more captions each.
        output_dir: where the checkpoint (for resuming) and the final model go.
        config: the recipe.
        pictures: the samples already decoded by :func:`load_pictures` (decoded here otherwise).
        validate: called with the model after every ``validate_every`` epochs; returns metrics.
        progress: a tqdm bar with loss and throughput.
        resume: continue from ``output_dir/checkpoint.pt`` when it exists.
        stop_after_epoch: stop (as if interrupted) after this epoch; for tests and time budgets.

    Raises:
        TrainingError: no usable samples, a checkpoint from another recipe, or out of memory.

    One loop on purpose: the order in which it draws from its random generator is what makes a
    resumed run repeat an uninterrupted one exactly.
    """
    import open_clip
    import torch

    if not samples:
        raise TrainingError("the training collection is empty")
    config = dataclasses.replace(config, precision=_resolve_precision(config.precision))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    register_open_clip_configs()
    torch.manual_seed(config.seed)  # the initial weights too
    model, model_cfg = _create(config)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    crop_from = int(round(size * (1 + config.crop_margin)))
    if pictures is None:
        pictures, samples = load_pictures(samples, crop_from, on_skip=lambda *_: None)
    if pictures.shape[1] < size:
        raise TrainingError(f"pictures of {pictures.shape[1]} px are smaller than the input {size}")
    tokenizer = open_clip.get_tokenizer(config.arch)
    preprocess = PreprocessConfig(size=size, mean=CLIP_MEAN, std=CLIP_STD)

    generator = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = max(1, len(samples) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(
        _param_groups(model, config.weight_decay), lr=config.lr, betas=(0.9, 0.98), eps=1e-6
    )
    start_epoch, history = 0, []
    checkpoint_path = output_dir / CHECKPOINT
    if resume and checkpoint_path.exists():
        state = resume_checkpoint(
            checkpoint_path,
            model,
            optimizer,
            generator,
            same_run=lambda state: (
                {**_BEFORE_FIELDS_EXISTED, **state["config"]} == asdict(config)
                and state["samples"] == len(samples)
            ),
            advice="pass the same options to resume, or another output folder (or --no-resume) "
            "to start over",
        )
        start_epoch, history = state["epoch"], state["history"]

    from tqdm import tqdm

    bar = tqdm(
        total=total_steps, initial=start_epoch * steps_per_epoch, disable=not progress, unit="step"
    )
    started = time.perf_counter()
    loss_value = float("nan")
    for epoch in range(start_epoch, config.epochs):
        model.train()
        order = torch.randperm(len(samples), generator=generator)
        epoch_losses = []
        for step_in_epoch in range(steps_per_epoch):
            step = epoch * steps_per_epoch + step_in_epoch
            for group in optimizer.param_groups:
                group["lr"] = _lr(step, total_steps, config)
            idx = order[step_in_epoch * config.batch_size : (step_in_epoch + 1) * config.batch_size]
            images = _augment(pictures, idx.numpy(), size, config.flip, generator)
            texts = [_one_caption(samples[i], generator) for i in idx.tolist()]
            batch = to_model_tensor(images, preprocess), tokenizer(texts)
            loss_value = _step(model, optimizer, batch, config)
            epoch_losses.append(loss_value)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_value:.3f}")
            bar.update(1)
        record = {"epoch": epoch + 1, "loss": float(np.mean(epoch_losses))}
        if validate is not None and (
            (epoch + 1) % validate_every == 0 or epoch + 1 == config.epochs
        ):
            model.eval()
            record.update(validate(_Evaluable(model, tokenizer, preprocess)))
        history.append(record)
        state = {"epoch": epoch + 1, "history": history, "samples": len(samples)}
        state["config"] = asdict(config)
        save_checkpoint(checkpoint_path, model, optimizer, generator, state)
        if (
            stop_after_epoch is not None
            and epoch + 1 >= stop_after_epoch
            and epoch + 1 < config.epochs
        ):
            bar.close()
            raise KeyboardInterrupt
    bar.close()
    save_model_folder(model, model_cfg, preprocess, output_dir)
    return TrainResult(
        output_dir=str(output_dir),
        epochs=config.epochs,
        steps=total_steps,
        seconds=time.perf_counter() - started,
        final_loss=loss_value,
        history=history,
    )


def _one_caption(sample: TrainingSample, generator) -> str:
    """One of the sample's captions, drawn from the run's generator (so a resume repeats it)."""
    import torch

    return sample.captions[int(torch.randint(len(sample.captions), (1,), generator=generator))]


def _step(model, optimizer, batch, config: TrainConfig) -> float:
    """One optimiser step on a batch of (pixels, tokens): CLIP's symmetric contrastive loss."""
    import torch
    import torch.nn.functional as F

    pixels, tokens = batch
    try:
        with torch.autocast("cpu", torch.bfloat16, enabled=config.precision == "bf16"):
            image_features = model.encode_image(pixels, True)
            text_features = model.encode_text(tokens, True)
        image_features, text_features = image_features.float(), text_features.float()
        logits = model.logit_scale.exp() * image_features @ text_features.T
        labels = torch.arange(len(pixels))
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    except (RuntimeError, MemoryError) as exc:
        if "memory" in str(exc).lower() or isinstance(exc, MemoryError):
            raise TrainingError(
                f"out of memory at batch size {config.batch_size}; try a smaller --batch-size"
            ) from exc
        raise
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))
    return loss.item()


def _create(config: TrainConfig):
    """The model to train and its open_clip config.

    Raises:
        TrainingError: out of memory creating it.
    """
    try:
        return _create_model(config)
    except (RuntimeError, MemoryError) as exc:
        if "memory" not in str(exc).lower() and not isinstance(exc, MemoryError):
            raise
        raise TrainingError(
            f"out of memory creating {config.arch}; choose a smaller --arch"
        ) from exc


def _create_model(config: TrainConfig):
    import open_clip

    model_cfg = open_clip.get_model_config(config.arch)
    if model_cfg is None:
        raise TrainingError(
            f"unknown architecture {config.arch!r}; small ones: mmsearch-tiny, clipart-mini; "
            "or any of open_clip.list_models()"
        )
    if config.init:
        from mmsearch.encoders.registry import resolve_model

        spec = resolve_model(config.init)
        try:
            model = open_clip.create_model(spec.arch, pretrained=spec.pretrained, weights_only=True)
        except (RuntimeError, OSError, ValueError) as exc:
            raise TrainingError(f"cannot load {config.init} to fine-tune: {exc}") from exc
    else:
        model = open_clip.create_model(config.arch)
    return model, model_cfg


def _param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        # CLIP's recipe: no weight decay on gains, biases, embeddings and the temperature.
        is_gain = param.ndim < 2 or "bn" in name or "ln" in name or "logit_scale" in name
        (no_decay if is_gain or "embedding" in name else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _lr(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
    return 0.5 * config.lr * (1 + math.cos(math.pi * min(1.0, progress)))


def _augment(pictures: np.ndarray, idx: np.ndarray, size: int, flip: bool, generator) -> np.ndarray:
    import torch

    big = pictures.shape[1]
    out = np.empty((len(idx), size, size, 3), np.uint8)
    offsets = torch.randint(big - size + 1, (len(idx), 2), generator=generator).numpy()
    flips = torch.rand(len(idx), generator=generator).numpy() < 0.5
    for j, (i, (y, x)) in enumerate(zip(idx, offsets, strict=True)):
        crop = pictures[i, y : y + size, x : x + size]
        out[j] = crop[:, ::-1] if flip and flips[j] else crop
    return out


class _Evaluable:
    """A model being trained, shaped like an Encoder for evaluation."""

    def __init__(self, model, tokenizer, preprocess: PreprocessConfig):
        self._model, self._tokenizer, self.preprocess = model, tokenizer, preprocess

    def encode_images(self, pictures: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = [
                self._model.encode_image(
                    to_model_tensor(pictures[i : i + 256], self.preprocess), True
                )
                for i in range(0, len(pictures), 256)
            ]
        return torch.cat(out).numpy()

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            out = [
                self._model.encode_text(self._tokenizer(texts[i : i + 256]), True)
                for i in range(0, len(texts), 256)
            ]
        return torch.cat(out).numpy()


def save_model_folder(model, model_cfg: dict, preprocess: PreprocessConfig, output_dir: Path):
    """Write ``open_clip_config.json`` and fp16 weights: a folder any ``--model`` accepts."""
    import torch

    config = {
        "model_cfg": model_cfg,
        "preprocess_cfg": {
            "size": preprocess.size,
            "mean": list(preprocess.mean),
            "std": list(preprocess.std),
            "interpolation": preprocess.interpolation,
            "resize_mode": preprocess.resize_mode,
        },
    }
    (output_dir / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    tmp = output_dir / (WEIGHTS_FILE + ".tmp")
    torch.save(state, tmp)
    tmp.replace(output_dir / WEIGHTS_FILE)
