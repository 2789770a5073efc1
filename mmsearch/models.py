"""The model registry: presets kept as data, and resolving what a user typed after ``--model``.

A ``--model`` value is one of:

* a preset name from :data:`PRESETS` (``list_models()``), e.g. ``clipart-mini``;
* an open_clip ``ARCH:TAG`` pair, e.g. ``ViT-B-32:laion2b_s34b_b79k``;
* ``ARCH:PATH`` for a local checkpoint file of that architecture;
* a model folder in open_clip's layout (``open_clip_config.json`` beside the weights), which is
  what ``mmsearch train`` writes;
* ``hf-hub:ORG/REPO`` for an open_clip model on the Hugging Face Hub.

Dispatch is by the form of the value (a known name, an existing path, a colon), never by
substrings of model names.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from mmsearch.errors import ModelError

PACKAGE_DIR = Path(__file__).resolve().parent
MODEL_CONFIG_DIR = PACKAGE_DIR / "model_configs"  # small architectures defined as data
BUNDLED_MODEL_DIR = PACKAGE_DIR / "models"  # weights that ship inside the package


@dataclass(frozen=True)
class ModelSpec:
    """Where a model comes from.

    Attributes:
        name: the preset name, or the ``--model`` value it was resolved from.
        arch: an open_clip architecture (``ViT-B-32``), or ``local-dir:PATH`` / ``hf-hub:REPO``.
        pretrained: an open_clip pretrained tag, a checkpoint file, or None.
        dim: the embedding dimension, when known before loading.
        description: one line for ``mmsearch models``.
        imagenet_zero_shot: published ImageNet-1k zero-shot top-1, for choosing a model.
        reparameterize: fold MobileCLIP's training-time branches for inference.
    """

    name: str
    arch: str
    pretrained: str | None = None
    dim: int | None = None
    description: str = ""
    imagenet_zero_shot: float | None = None
    reparameterize: bool = False
    languages: tuple[str, ...] = field(default=("en",))

    @property
    def weights_path(self) -> Path | None:
        """The local file holding the weights, when the weights are local."""
        if self.arch.startswith("local-dir:"):
            from open_clip.factory import _find_checkpoint_in_dir

            found = _find_checkpoint_in_dir(Path(self.arch.removeprefix("local-dir:")))
            return Path(found) if found else None
        if self.pretrained and Path(self.pretrained).is_file():
            return Path(self.pretrained)
        return None


PRESETS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="vit-b-32-256",
            arch="ViT-B-32-256",
            pretrained="datacomp_s34b_b86k",
            dim=512,
            description="Default for photos: DataComp ViT-B/32 at 256 px",
            imagenet_zero_shot=0.728,
        ),
        ModelSpec(
            name="mobileclip2-s2",
            arch="MobileCLIP2-S2",
            pretrained="dfndr2b",
            dim=512,
            description="Apple MobileCLIP2-S2 (reparameterised for inference)",
            imagenet_zero_shot=0.772,
            reparameterize=True,
        ),
        ModelSpec(
            name="vit-b-32",
            arch="ViT-B-32",
            pretrained="laion2b_s34b_b79k",
            dim=512,
            description="LAION-2B ViT-B/32 at 224 px",
            imagenet_zero_shot=0.666,
        ),
        ModelSpec(
            name="xlm-roberta-b-32",
            arch="xlm-roberta-base-ViT-B-32",
            pretrained="laion5b_s13b_b90k",
            dim=512,
            description="Multilingual queries (100+ languages; needs `pip install transformers`)",
            imagenet_zero_shot=0.623,
            languages=("multilingual",),
        ),
        ModelSpec(
            name="clipart-mini",
            arch=f"local-dir:{BUNDLED_MODEL_DIR / 'clipart-mini'}",
            dim=256,
            description="Bundled offline model trained on Open Clip Art (clip art, not photos)",
        ),
    )
}

DEFAULT_MODEL = "vit-b-32-256"
OFFLINE_MODEL = "clipart-mini"


def list_models() -> list[ModelSpec]:
    """The presets, in registry order."""
    return list(PRESETS.values())


def get_model(name: str) -> ModelSpec:
    """The preset called ``name``.

    Raises:
        ModelError: no such preset.
    """
    try:
        return PRESETS[name]
    except KeyError:
        raise ModelError(f"unknown model preset {name!r}; presets: {', '.join(PRESETS)}") from None


def register_model(spec: ModelSpec) -> None:
    """Add or replace a preset (for applications that ship their own models)."""
    PRESETS[spec.name] = spec


@functools.cache
def register_open_clip_configs() -> None:
    """Make our small architectures (defined as JSON data) known to open_clip."""
    import open_clip

    open_clip.add_model_config(MODEL_CONFIG_DIR)


def resolve_model(value: str) -> ModelSpec:
    """Turn a ``--model`` value into a :class:`ModelSpec` (see the module docstring).

    Raises:
        ModelError: the value names nothing usable; the message lists what would work.
    """
    if value in PRESETS:
        return PRESETS[value]
    if value.startswith("hf-hub:"):
        return ModelSpec(name=value, arch=value)
    path = Path(value).expanduser()
    if path.is_dir():
        if not (path / "open_clip_config.json").is_file():
            raise ModelError(
                f"model folder {value} has no open_clip_config.json; a model folder holds "
                "open_clip_config.json beside its weights (as `mmsearch train` writes)"
            )
        return ModelSpec(name=value, arch=f"local-dir:{path.resolve()}")
    if path.is_file():
        raise ModelError(
            f"{value} is a checkpoint file; name its architecture as ARCH:PATH "
            f"(e.g. ViT-B-32:{value}) or pass the model folder that holds it"
        )
    arch, sep, tag = value.partition(":")
    if not sep:
        raise ModelError(
            f"unknown model {value!r}: not a preset ({', '.join(PRESETS)}), not ARCH:TAG, "
            "and no such file or folder"
        )
    import open_clip

    register_open_clip_configs()
    if arch not in open_clip.list_models():
        raise ModelError(
            f"unknown open_clip architecture {arch!r} in {value!r}; see "
            "`python -c 'import open_clip; print(open_clip.list_models())'`"
        )
    tag_path = Path(tag).expanduser()
    if tag_path.is_file():
        return ModelSpec(name=value, arch=arch, pretrained=str(tag_path.resolve()))
    if tag not in open_clip.list_pretrained_tags_by_model(arch):
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise ModelError(
            f"{tag!r} is neither a pretrained tag of {arch} nor an existing checkpoint file; "
            f"tags for {arch}: {tags}"
        )
    return ModelSpec(name=value, arch=arch, pretrained=tag)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_id(spec: ModelSpec) -> str:
    """What identifies the weights: the pretrained tag, or the checksum of a local file."""
    local = spec.weights_path
    if local is not None:
        return f"sha256:{file_sha256(local)}"
    if spec.pretrained:
        return f"tag:{spec.arch}:{spec.pretrained}"
    return f"source:{spec.arch}"
