"""Training checkpoints: the model, optimiser and random generator after an epoch, written
atomically, and resumed only into the run that made them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mmsearch.errors import TrainingError


def save_checkpoint(path: Path, model, optimizer, generator, state: dict) -> None:
    """Write the checkpoint with ``state`` (epoch, history, what identifies the run); an
    interrupted save keeps the previous checkpoint."""
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            **state,
        },
        tmp,
    )
    tmp.replace(path)


def resume_checkpoint(
    path: Path, model, optimizer, generator, *, same_run: Callable[[dict], bool], advice: str
) -> dict:
    """Load a checkpoint into the model, optimiser and generator; returns its state.

    Raises:
        TrainingError: ``same_run`` says the checkpoint was made by another run (``advice``
            says how to resume or start over).
    """
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if not same_run(state):
        raise TrainingError(f"{path} was made with other settings or data; {advice}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    return state
