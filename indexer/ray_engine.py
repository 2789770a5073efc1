"""``index --engine ray``: decoding and encoding on a Ray cluster, the library written here.

The driver (this process) walks the folders, detects changes and writes the library exactly as
a local run does (:mod:`indexer.pipeline`); only the two expensive steps move to the cluster,
as one Ray Data stream: decoding as CPU tasks with the same safe loader (the same skip reasons),
then encoding in a pool of actors that each load the model once (``map_batches`` with an actor
pool, a GPU each where asked). What comes back is each file's vectors, never its pixels; the
driver stores them batch by batch, so an interrupted run keeps every committed batch. Workers
read the files by path: the photo folders must be at the same path on every node (a NAS).

Ray Data runs a task again, or restarts an actor, whose process died (its defaults); what
cannot be decoded on a worker is skipped with its reason, as on one machine.
"""

from __future__ import annotations

import pickle
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from indexer.decode import Decoded, share_known_content
from mmsearch.errors import InputError, ModelMismatchError
from mmsearch.imaging.fingerprint import KnownContent

INSTALL_HINT = "the Ray engine needs Ray: pip install 'mmsearch[ray]'"
CONNECT_TIMEOUT = 5.0  # seconds for a cluster address to answer before Ray is asked to join it
DECODE_MEMORY = 256 * 2**20  # bytes a decoding task reserves on its node


@dataclass(frozen=True)
class RayEngine:
    """Where and how an index run uses Ray."""

    address: str | None = None  # a running cluster's head (host:port); None: a Ray started here
    encoders: int | None = None  # encoder actors (each loads the model once); None: see below
    # GPUs each encoder actor takes; None: one where the cluster has GPUs (and then an actor a
    # GPU), else none (and one actor)
    gpus_per_worker: float | None = None

    def placement(self, cluster_gpus: float) -> tuple[int, float]:
        """(encoder actors, GPUs each) on a cluster with this many GPUs."""
        per = self.gpus_per_worker if self.gpus_per_worker is not None else min(1.0, cluster_gpus)
        count = self.encoders or (max(1, int(cluster_gpus // per)) if per else 1)
        return count, per


def connect(engine: RayEngine) -> bool:
    """Join the cluster (or start Ray here); True when this call started Ray (and the caller
    shuts it down).

    Raises:
        InputError: Ray is not installed, or the address does not answer.
    """
    try:
        import ray
    except ImportError as exc:
        raise InputError(INSTALL_HINT) from exc
    if ray.is_initialized():
        return False
    if engine.address and engine.address != "auto":
        host, _, port = engine.address.removeprefix("ray://").rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), CONNECT_TIMEOUT).close()
        except (OSError, ValueError) as exc:
            raise InputError(
                f"no Ray cluster answers at {engine.address} ({exc}); start one with "
                "`ray start --head` and give its address (host:port) to --ray-address"
            ) from exc
    ray.init(address=engine.address, include_dashboard=False, log_to_driver=False,
             logging_level="ERROR", configure_logging=True)  # fmt: skip
    _quiet(ray)
    return True


def shutdown() -> None:
    import ray

    ray.shutdown()


def decoded_on_cluster(
    paths: list[str],
    decode: Callable[[str], Decoded],
    known: KnownContent,
    spec,
    weights: str,
    engine: RayEngine,
    batch_size: int,
) -> Iterator[Decoded]:
    """Each file decoded by a Ray task and, where it decoded, encoded by an encoder actor: the
    Decoded without its pixels and with its ``vectors`` (one a picture, one a moment of a
    video), in the order Ray finishes them."""
    import ray
    import ray.data

    resources = ray.cluster_resources()
    actors, gpus = engine.placement(resources.get("GPU", 0.0))
    cpus = resources.get("CPU", 0.0)
    if not gpus and cpus < actors + 1:
        # Each encoder actor holds a CPU; decoding tasks need one more, or they never start.
        raise InputError(
            f"the Ray cluster has {cpus:g} CPUs: {actors} encoder actor(s) take {actors} and "
            "decoding needs at least one more; add a node, or give fewer --encoders"
        )
    items = ray.data.from_items([{"path": p} for p in paths])
    decoded = items.map_batches(
        _decode_batch,
        fn_kwargs={"decode": decode, "known": known},
        batch_size=batch_size,
        num_cpus=1,
        # What a decoding task may hold (a batch of pictures being decoded, a video's frames).
        # Declaring it also keeps decoding in tasks of its own: Ray Data fuses a task stage
        # into the actor stage after it when their resources match, and decoding inside the
        # encoder actors would leave the other cores idle.
        memory=DECODE_MEMORY,
    )
    encoded = decoded.map_batches(
        _EncoderActor,
        fn_constructor_kwargs={"spec": spec, "weights": weights},
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=gpus,
    )
    try:
        for batch in encoded.iter_batches(batch_size=None):
            for blob in batch["decoded"]:
                yield pickle.loads(blob)
    except Exception as exc:  # noqa: BLE001 - Ray wraps an actor's error in its own types
        raise _user_error(exc) from exc


def _decode_batch(batch: dict, decode, known: KnownContent) -> dict:
    share_known_content(known)
    found = [decode(str(path)) for path in batch["path"]]
    return {"decoded": np.array([pickle.dumps(d) for d in found], dtype=object)}


class _EncoderActor:
    """One model, loaded once per actor; encodes the decoded pictures and videos it is given."""

    def __init__(self, spec, weights: str):
        import torch

        from mmsearch.encoders.base import create_encoder

        self.encoder = create_encoder(spec, device="cuda" if torch.cuda.is_available() else None)
        found = self.encoder.identity()["weights"]
        if found != weights:
            raise ModelMismatchError(
                f"a Ray worker's model {spec.name} has other weights ({found}) than the "
                f"library's ({weights}): install the same mmsearch and model on every node"
            )

    def __call__(self, batch: dict) -> dict:
        found = [pickle.loads(blob) for blob in batch["decoded"]]
        ready = [d for d in found if d.pixels is not None]
        if ready:
            frames = [d.pixels if d.is_video else d.pixels[None] for d in ready]
            vectors = self.encoder.encode_images(np.concatenate(frames))
            start, done = 0, {}
            for d, count in zip(ready, (len(f) for f in frames), strict=True):
                done[id(d)] = replace(d, pixels=None, vectors=vectors[start : start + count])
                start += count
            found = [done.get(id(d), d) for d in found]
        return {"decoded": np.array([pickle.dumps(d) for d in found], dtype=object)}


def _user_error(exc: Exception) -> Exception:
    """An actor's ModelMismatchError as itself; anything else says it came from Ray."""
    cause = exc
    while cause is not None:
        if isinstance(cause, ModelMismatchError):
            return ModelMismatchError(str(cause))
        cause = getattr(cause, "cause", None) or cause.__cause__
    return InputError(f"the Ray cluster failed the run ({type(exc).__name__}: {exc})")


def _quiet(ray) -> None:
    """Ray Data's progress bars and per-operator logs would fight mmsearch's own bar."""
    import logging

    import ray.data

    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
