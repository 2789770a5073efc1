"""Which model a library's vectors come from: chosen once, recorded with the first vectors, and
checked on every later open and every write.

A library holds vectors of one model only. The model is recorded (its identity: name,
architecture, weights, dimension, preprocessing) in the same transaction as the first vectors,
so a library that never stored any has no model yet and may still be opened with another.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from mmsearch.encoders.base import Encoder, create_encoder
from mmsearch.encoders.languages import uncovered_script
from mmsearch.encoders.registry import (
    DEFAULT_DUPLICATE_THRESHOLD,
    DEFAULT_MODEL,
    OFFLINE_MODEL,
    PRESETS,
    ModelSpec,
    changed_tower,
    model_languages,
    resolve_model,
    weights_id,
)
from mmsearch.errors import ModelMismatchError
from mmsearch.storage.engine import get_setting, set_setting


class LibraryModel:
    """A library's model: its spec, its stored identity, and its encoder (loaded on first use).

    Args:
        model: a model asked for by name or path; None takes the stored one (else the default).
        encoder: an encoder to use as it is (its spec is the model).

    Raises:
        ModelMismatchError: the model asked for is not the one the library's vectors come from.
    """

    def __init__(self, library_dir: Path, engine, *, model=None, device=None, encoder=None):
        self._library_dir = library_dir
        self._device = device
        with Session(engine) as session:
            self.stored: dict | None = get_setting(session, "model")
        self._encoder: Encoder | None = encoder
        self.spec = encoder.spec if encoder is not None else self._choose(model)
        if self.stored and encoder is not None:
            self._check_identity(encoder.identity()["weights"], encoder.spec.name)

    def _choose(self, model: str | None) -> ModelSpec:
        stored = self.stored
        if model is not None:
            spec = resolve_model(model)
            if stored:
                self._check_identity(weights_id(spec), model)
            return spec
        if not stored:
            return PRESETS[DEFAULT_MODEL]
        if stored["model"] in PRESETS:
            # By name, not by stored path: the bundled model's folder moves with the package.
            spec = PRESETS[stored["model"]]
            self._check_identity(weights_id(spec), stored["model"])
            return spec
        return ModelSpec(
            name=stored["model"],
            arch=stored["arch"],
            pretrained=stored.get("pretrained"),
            reparameterize=stored.get("reparameterize", False),
            kind=stored.get("kind", "open_clip"),
        )

    def _check_identity(self, weights: str, requested: str) -> None:
        stored = self.stored
        if weights == stored["weights"]:
            return
        changed = changed_tower(stored, weights) if requested == stored["model"] else None
        if changed:
            raise ModelMismatchError(
                f"library {self._library_dir} was built with {changed}; its vectors would not "
                "be comparable with the installed version's. Install the version it was built "
                "with, or index into a new --library"
            )
        if requested == stored["model"]:  # same name, other weights: retrained or upgraded
            raise ModelMismatchError(
                f"library {self._library_dir} was built with other weights of model "
                f"{requested} ({_short(stored['weights'])}; installed: {_short(weights)}): "
                "the model was retrained, or mmsearch upgraded with new bundled weights, and "
                "its vectors would not be comparable with the stored ones. Index into a new "
                "--library, or use the model (or mmsearch version) the library was built with"
            )
        raise ModelMismatchError(
            f"library {self._library_dir} was built with model {stored['model']}; "
            f"{requested} is a different model and its vectors would not be comparable. "
            f"Omit --model (or pass --model {stored['model']}), or use another --library "
            "for the new model"
        )

    @property
    def encoder(self) -> Encoder:
        """The encoder, loaded on first use."""
        if self._encoder is None:
            self._encoder = create_encoder(self.spec, device=self._device)
        return self._encoder

    @property
    def encoder_loaded(self) -> bool:
        """Whether the encoder was created (a one-shot text query never creates it)."""
        return self._encoder is not None

    def admit(self, session: Session, vectors: np.ndarray) -> None:
        """Before vectors are stored in ``session``'s transaction: record the model with the
        first vectors, and refuse vectors of another dimension.

        Raises:
            ModelMismatchError: the vectors' dimension is not the library's.
        """
        if self.stored is None:
            identity = self.encoder.identity()
            set_setting(session, "model", identity)
            self.stored = identity
        expected = int(self.stored["dim"])
        if vectors.shape[1] != expected:
            raise ModelMismatchError(
                f"vectors of dimension {vectors.shape[1]} cannot join library "
                f"{self._library_dir}, whose model makes dimension {expected}"
            )

    @property
    def duplicate_threshold(self) -> float:
        """The cosine similarity from which this model's vectors are the same picture."""
        return self.spec.duplicate_threshold or DEFAULT_DUPLICATE_THRESHOLD

    def language_warning(self, text: str) -> str | None:
        """A warning when ``text`` is in a script that this model's text tower never learnt
        (its scores would look as confident as any, and mean nothing), else None."""
        languages = model_languages(self.spec)
        script = uncovered_script(text, languages)
        if script is None:
            return None
        return (
            f"the query {text!r} is in {script} script, which model {self.spec.name} was not "
            f"trained to read (its languages: {', '.join(languages)}); its scores mean little. "
            f"{OFFLINE_MODEL} reads {', '.join(model_languages(PRESETS[OFFLINE_MODEL]))}"
        )


def _short(weights: str) -> str:
    """A weights id short enough for a message: its kind and first 12 hex digits."""
    kind, _, digest = weights.split(";")[0].rpartition(":")
    return f"{kind}:{digest[:12]}" if kind else weights[:40]
