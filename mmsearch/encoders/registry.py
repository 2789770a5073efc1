"""The model registry: presets kept as data, and resolving what a user typed after ``--model``.

A ``--model`` value is one of:

* a preset name from :data:`PRESETS` (``list_models()``), e.g. ``clipart-mini``;
* an open_clip ``ARCH:TAG`` pair, e.g. ``ViT-B-32:laion2b_s34b_b79k``;
* ``ARCH:PATH`` for a local checkpoint file of that architecture;
* a model folder in open_clip's layout (``open_clip_config.json`` beside the weights), which is
  what ``mmsearch train`` writes;
* ``hf-hub:ORG/REPO`` for an open_clip model on the Hugging Face Hub;
* a towers model folder (``towers_config.json`` beside ``heads.npz``): pretrained towers from
  packages joined by trained heads (:mod:`mmsearch.encoders.towers_encoder`), which ``mmsearch train
  --kind towers`` writes.

A spec's :attr:`ModelSpec.kind` says which encoder runs it: ``open_clip`` or ``towers``.

Dispatch is by the form of the value (a known name, an existing path, a colon), never by
substrings of model names.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

from mmsearch.encoders.weights_digest import file_sha256
from mmsearch.errors import ModelError

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
MODEL_CONFIG_DIR = DATA_DIR / "model_configs"  # small architectures defined as data
BUNDLED_MODEL_DIR = DATA_DIR / "models"  # weights that ship inside the package


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
        kind: which encoder runs it: ``open_clip``
            (:class:`~mmsearch.encoders.base.OpenClipEncoder`) or ``towers``
            (:class:`~mmsearch.encoders.towers_encoder.TowersEncoder`).
        languages: ISO 639-1 codes of the languages its text tower was trained on.
        duplicate_threshold: the cosine similarity from which two images are the same picture,
            measured for this model (``bench/duplicate_threshold.py``); None:
            :data:`DEFAULT_DUPLICATE_THRESHOLD`.
    """

    name: str
    arch: str
    pretrained: str | None = None
    dim: int | None = None
    description: str = ""
    imagenet_zero_shot: float | None = None
    reparameterize: bool = False
    kind: str = "open_clip"
    languages: tuple[str, ...] = field(default=("en",))
    duplicate_threshold: float | None = None

    @property
    def folder(self) -> Path | None:
        """The model folder, for a model that is one (``local-dir:`` or ``towers-dir:``)."""
        for prefix in ("local-dir:", "towers-dir:"):
            if self.arch.startswith(prefix):
                return Path(self.arch.removeprefix(prefix))
        return None

    @property
    def weights_path(self) -> Path | None:
        """The local file holding the weights, when the weights are local."""
        if self.kind == "towers":
            return self.folder / _towers_config(self).get("heads", "heads.npz")
        if self.folder is not None:
            return _checkpoint_in(self.folder)
        if self.pretrained and Path(self.pretrained).is_file():
            return Path(self.pretrained)
        return None


# What open_clip's create_model picks in a model folder (open_clip.factory._find_checkpoint_in_dir),
# spelt out so that opening a library does not import open_clip, and torch with it, to learn a
# file name; a test keeps the two in step.
_PREFERRED_CHECKPOINTS = (
    "open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth",
    "model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth",
)  # fmt: skip


def _checkpoint_in(folder: Path) -> Path | None:
    found = sorted(
        p for suffix in ("safetensors", "bin", "pth") for p in folder.glob(f"*.{suffix}")
    )
    found.sort(key=lambda p: p.suffix == ".safetensors", reverse=True)
    preferred = [p for p in found if p.name in _PREFERRED_CHECKPOINTS]
    if preferred:
        return min(preferred, key=lambda p: _PREFERRED_CHECKPOINTS.index(p.name))
    return found[0] if found else None


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
            name="lite0-muse-clipart-memory-jmdict",
            arch=f"towers-dir:{BUNDLED_MODEL_DIR / 'lite0-muse-clipart-memory-jmdict'}",
            kind="towers",
            dim=512,
            description="Bundled offline model: EfficientNet-Lite0 + multilingual USE, heads "
            "trained on Open Clip Art, a memory of its 7,400 drawings, the tower's ImageNet "
            "class names and a Japanese dictionary (clip art and icons; 16 languages)",
            # Two different AIGA signs score 0.94 (BENCHMARKS.md, "Duplicate thresholds per
            # model")
            duplicate_threshold=0.95,
        ),
        ModelSpec(
            name="lite0-muse-clipart-memory",
            arch=f"towers-dir:{BUNDLED_MODEL_DIR / 'lite0-muse-clipart-memory'}",
            kind="towers",
            dim=512,
            description="The same towers, heads and memory without class names and dictionary "
            "(kept so that its libraries open)",
            # Higher than its heads alone: the memory pulls drawings of one set together
            # (BENCHMARKS.md, "Duplicate thresholds per model")
            duplicate_threshold=0.95,
        ),
        ModelSpec(
            name="lite0-muse-clipart",
            arch=f"towers-dir:{BUNDLED_MODEL_DIR / 'lite0-muse-clipart'}",
            kind="towers",
            dim=512,
            description="The same towers and heads without the memory (kept so that its "
            "libraries open)",
            duplicate_threshold=0.90,  # BENCHMARKS.md, "Duplicate thresholds per model"
        ),
        ModelSpec(
            name="clipart-mini",
            arch=f"local-dir:{BUNDLED_MODEL_DIR / 'clipart-mini'}",
            dim=256,
            description="The first bundled model: a small CLIP trained from scratch on Open Clip "
            "Art (English; kept so that its libraries open)",
            duplicate_threshold=0.99,  # different photos score up to 0.98 (BENCHMARKS.md)
        ),
    )
}

DEFAULT_MODEL = "vit-b-32-256"
# Where a model's duplicate threshold was not measured (the pretrained CLIPs cannot be
# downloaded here): the value CLIP-based tools commonly use.
DEFAULT_DUPLICATE_THRESHOLD = 0.95
OFFLINE_MODEL = "lite0-muse-clipart-memory-jmdict"


def list_models() -> list[ModelSpec]:
    """The presets, in registry order."""
    return list(PRESETS.values())


def offline_presets() -> list[str]:
    """The presets whose weights ship with mmsearch (or its dependencies): no download."""
    return [s.name for s in PRESETS.values() if s.folder is not None]


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
        if (path / "towers_config.json").is_file():
            return ModelSpec(name=value, arch=f"towers-dir:{path.resolve()}", kind="towers")
        if not (path / "open_clip_config.json").is_file():
            raise ModelError(
                f"model folder {value} has neither open_clip_config.json nor towers_config.json; "
                "a model folder holds one of them beside its weights (as `mmsearch train` writes)"
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


def model_languages(spec: ModelSpec) -> tuple[str, ...]:
    """The languages ``spec``'s text tower was trained on (a towers model: its text tower's)."""
    if spec.kind != "towers":
        return spec.languages
    return _tower_specs(spec)[1].languages


def towers_weights_id(spec: ModelSpec) -> str:
    from mmsearch.encoders.towers import tower_identity

    parts = [f"sha256:{file_sha256(spec.weights_path)}"]
    config = _towers_config(spec)
    for role in ("classes", "lexicon"):  # files beside the heads that change vectors too
        if config.get(role):
            parts[0] += f"+{role}:{file_sha256(model_file(spec.folder / config[role]))}"
    for tower in _tower_specs(spec):
        found = tower_identity(tower)
        parts.append(f"{found['package']}=={found['version']}:{found['sha256'][:16]}")
    return "towers:" + ";".join(parts)


def model_file(path: Path) -> Path:
    """``path``, or a clear error where a file of a model's folder is missing."""
    if not path.is_file():
        raise ModelError(
            f"the towers model's file {path} is missing; reinstall mmsearch, or rebuild it "
            "(scripts/build_lexicon_ja.py, scripts/build_class_names.py)"
        )
    return path


def _tower_specs(spec: ModelSpec) -> tuple:
    """(image tower, text tower) specs that a towers model folder names."""
    from mmsearch.encoders.towers import image_tower_spec, text_tower_spec

    config = _towers_config(spec)
    try:
        return image_tower_spec(config["image_tower"]), text_tower_spec(config["text_tower"])
    except KeyError as exc:
        raise ModelError(f"cannot read towers model {spec.folder}: {exc}") from exc


def _towers_config(spec: ModelSpec) -> dict:
    """A towers model folder's ``towers_config.json``, as plain data (no torch, no numpy)."""
    import json

    try:
        return json.loads((spec.folder / "towers_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read towers model {spec.folder}: {exc}") from exc


def changed_tower(stored: dict, weights: str) -> str | None:
    """Which tower package differs between a library's stored towers model and ``weights``
    (the installed model's :func:`weights_id`), as ``"PACKAGE VERSION (installed: ...)"``."""
    old = stored.get("weights", "")
    if not (old.startswith("towers:") and weights.startswith("towers:")):
        return None
    for was, now in zip(old.split(";")[1:], weights.split(";")[1:], strict=False):
        if was != now:
            package, version = _package_version(was)
            return f"{package} {version} (installed: {_package_version(now)[1]})"
    return None


def _package_version(part: str) -> tuple[str, str]:
    """``"PACKAGE==VERSION:SHA"`` → (package, version, or version and sha when only it differs)."""
    package, _, rest = part.partition("==")
    version, _, sha = rest.partition(":")
    return package, f"{version} (weights {sha})"


def weights_id(spec: ModelSpec) -> str:
    """What identifies the weights: the pretrained tag, or the checksum of a local file; for a
    towers model, the checksum of its heads and each tower package's version and weights."""
    if spec.kind == "towers":
        return towers_weights_id(spec)
    local = spec.weights_path
    if local is not None:
        return f"sha256:{file_sha256(local)}"
    if spec.pretrained:
        return f"tag:{spec.arch}:{spec.pretrained}"
    return f"source:{spec.arch}"
