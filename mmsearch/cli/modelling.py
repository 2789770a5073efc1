"""Commands about models: ``models``, ``train`` and ``eval``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mmsearch.cli._common import (
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    app,
    command,
    exit_interrupted,
    print_json,
)
from mmsearch.errors import InputError


@app.command()
@command
def models(as_json: JsonOpt = False) -> None:
    """List the model presets."""
    from mmsearch.encoders.registry import DEFAULT_DUPLICATE_THRESHOLD, DEFAULT_MODEL, list_models

    specs = list_models()
    if as_json:
        print_json(
            [
                {
                    "name": s.name,
                    "kind": s.kind,
                    "arch": s.arch,
                    "pretrained": s.pretrained,
                    "dim": s.dim,
                    "imagenet_zero_shot": s.imagenet_zero_shot,
                    "duplicate_threshold": s.duplicate_threshold or DEFAULT_DUPLICATE_THRESHOLD,
                    "description": s.description,
                    "default": s.name == DEFAULT_MODEL,
                }
                for s in specs
            ]
        )
        return
    for s in specs:
        mark = "*" if s.name == DEFAULT_MODEL else " "
        typer.echo(f"{mark} {s.name:<18} {s.description}")


# Long, as Typer commands are: most of it is the option list in the signature.
@app.command()
@command
def train(
    captions_file: Annotated[
        Path, typer.Argument(help="JSONL of {image, caption | captions}; paths relative to it.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model folder to write.")],
    kind: Annotated[
        str,
        typer.Option(
            help="open_clip (train a CLIP, --arch) or towers (locked pretrained towers, trained "
            "heads: --image-tower, --text-tower)."
        ),
    ] = "open_clip",
    image_tower: Annotated[
        str, typer.Option(help="towers: the image tower (efficientnet-lite0, efficientnet-lite2).")
    ] = "efficientnet-lite0",
    text_tower: Annotated[
        str, typer.Option(help="towers: the text tower (use-multilingual-v3).")
    ] = "use-multilingual-v3",
    dim: Annotated[int, typer.Option(min=2, help="towers: the embedding dimension.")] = 512,
    image_hidden: Annotated[
        int, typer.Option(min=0, help="towers: hidden width of an MLP image head (0: linear).")
    ] = 0,
    image_size: Annotated[
        int, typer.Option(min=0, help="towers: input size in px (0: the tower's own).")
    ] = 0,
    views: Annotated[
        int, typer.Option(min=0, help="towers: augmented views per picture (crops and flips).")
    ] = 3,
    val_fraction: Annotated[
        float,
        typer.Option(
            min=0, max=0.5, help="towers: the slice of training pictures that chooses the epoch."
        ),
    ] = 0.05,
    memory: Annotated[
        bool,
        typer.Option(
            help="towers: a memory of the training pictures that vectors read from (chosen on "
            "the validation slice)."
        ),
    ] = True,
    arch: Annotated[
        str, typer.Option(help="open_clip architecture (ours: mmsearch-tiny, clipart-mini).")
    ] = "clipart-mini",
    init: Annotated[
        str | None, typer.Option(help="Fine-tune this --model value instead of starting afresh.")
    ] = None,
    val: Annotated[
        Path | None, typer.Option(help="Held-out captions file scored after each epoch.")
    ] = None,
    val_every: Annotated[int, typer.Option(min=1, help="Score --val every N epochs.")] = 1,
    epochs: Annotated[int, typer.Option(min=1)] = 30,
    batch_size: Annotated[int, typer.Option(min=2)] = 128,
    lr: Annotated[float, typer.Option(min=0)] = 1e-3,
    warmup: Annotated[int, typer.Option(min=0, help="Warm-up steps.")] = 100,
    seed: int = 0,
    precision: Annotated[
        str,
        typer.Option(
            help="auto (bf16 on CPUs with native bf16, else fp32), fp32 or bf16 (bf16 autocast; "
            "weights stay fp32)."
        ),
    ] = "auto",
    images_root: Annotated[
        Path | None, typer.Option(help="Folder the image paths are relative to.")
    ] = None,
    skip_missing: Annotated[
        bool, typer.Option(help="Leave out rows whose image does not exist.")
    ] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue from OUTPUT/checkpoint.pt when present.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Train (or fine-tune) a model on captioned images; the folder works as --model."""
    from mmsearch.train.from_files import train_from_files
    from mmsearch.train.open_clip_training import TrainConfig

    if kind == "towers":
        from mmsearch.train.from_files import train_towers_from_files
        from mmsearch.train.lit_training import LitConfig

        lit = LitConfig(
            image_tower=image_tower,
            text_tower=text_tower,
            dim=dim,
            image_hidden=image_hidden,
            image_size=image_size,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            views=views,
            val_fraction=val_fraction,
            memory=memory,
            seed=seed,
        )
        checkpoint = "lit_checkpoint.pt"

        def run():
            return train_towers_from_files(
                captions_file,
                output,
                lit,
                val_file=val,
                images_root=str(images_root) if images_root else None,
                skip_missing=skip_missing,
                resume=resume,
                log=lambda line: typer.echo(line, err=True),
            )

    elif kind == "open_clip":
        config = TrainConfig(
            arch=arch,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            warmup_steps=warmup,
            seed=seed,
            init=init,
            precision=precision,
        )
        checkpoint = "checkpoint.pt"

        def run():
            return train_from_files(
                captions_file,
                output,
                config,
                val_file=val,
                images_root=str(images_root) if images_root else None,
                skip_missing=skip_missing,
                progress=sys.stderr.isatty(),
                resume=resume,
                validate_every=val_every,
                log=lambda line: typer.echo(line, err=True),
            )

    else:
        raise InputError(f"--kind {kind!r}: use open_clip or towers")
    try:
        result = run()
    except KeyboardInterrupt:
        exit_interrupted(
            f"the last finished epoch is saved in {output}/{checkpoint}; "
            "run the same command again to resume."
        )
    if as_json:
        print_json(result.__dict__)
        return
    typer.echo(
        f"trained {result.epochs} epochs ({result.steps} steps) in {result.seconds:.0f} s, "
        f"final loss {result.final_loss:.3f}; use it with --model {output}"
    )


@app.command("eval")
@command
def evaluate(
    captions_file: Annotated[Path, typer.Argument(help="JSONL of {image, caption}.")],
    model: ModelOpt = None,
    device: DeviceOpt = None,
    images_root: Annotated[
        Path | None, typer.Option(help="Folder the image paths are relative to.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Score a model: text→image and image→text Recall@1/5/10 and median rank."""
    from mmsearch.encoders.base import create_encoder
    from mmsearch.encoders.registry import DEFAULT_MODEL, resolve_model
    from mmsearch.train.from_files import evaluate_file

    encoder = create_encoder(resolve_model(model or DEFAULT_MODEL), device=device)
    scores = evaluate_file(
        encoder,
        captions_file,
        images_root=str(images_root) if images_root else None,
        on_skip=lambda path, why: typer.echo(f"skipped: {why}", err=True),
    )
    if as_json:
        print_json(scores.to_dict())
        return
    skipped = f" ({scores.skipped_images} undecodable left out)" if scores.skipped_images else ""
    typer.echo(f"{scores.images} images{skipped}, {scores.captions} distinct captions")
    typer.echo(f"{'direction':<15}{'R@1':>7}{'R@5':>7}{'R@10':>7}{'median rank':>13}")
    for name, row in (
        ("text → image", scores.text_to_image),
        ("image → text", scores.image_to_text),
    ):
        typer.echo(
            f"{name:<15}{row['R@1']:>7.3f}{row['R@5']:>7.3f}{row['R@10']:>7.3f}"
            f"{row['median_rank']:>13.0f}"
        )
