"""What the demo runs: the six models, the data-set sizes and the shared small training recipe.

Two presets: :func:`default_settings` (sized for about 10 minutes on an idle 2-core CPU) and
:func:`quick_settings` (about a minute: tiny slides, a few steps; for CI). Every size is in pixels at
the slides' level-0 mpp (0.5 µm/px unless ``slide_mpp`` says otherwise).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

#: Data splits, in the order they are generated. ``test`` never takes part in training or model selection.
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class ModelSpec:
    """One of the paper's six models.

    Attributes
    ----------
    key
        File-system name (``unet_0.5``, ``mrn_bilinear``...).
    label
        Display name in tables and figures (``U-Net 0.5``, ``MRN-bilinear``...).
    config
        Packaged training recipe (``mrseg.training.config.load_config`` name).
    mpps
        Input resolutions in µm/px, finest first.
    """

    key: str
    label: str
    config: str
    mpps: tuple[float, ...]


#: The paper's comparison: single-resolution U-Nets at each mpp, and both MRN fusions on all four.
MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("unet_0.5", "U-Net 0.5", "synthetic_unet", (0.5,)),
    ModelSpec("unet_1", "U-Net 1", "synthetic_unet", (1.0,)),
    ModelSpec("unet_2", "U-Net 2", "synthetic_unet", (2.0,)),
    ModelSpec("unet_4", "U-Net 4", "synthetic_unet", (4.0,)),
    ModelSpec("mrn_bilinear", "MRN-bilinear", "synthetic_mrn_bilinear", (0.5, 1.0, 2.0, 4.0)),
    ModelSpec("mrn_transposed", "MRN-transposed", "synthetic_mrn_transposed", (0.5, 1.0, 2.0, 4.0)),
)


@dataclass(frozen=True)
class SplitSize:
    """How many slides of which size (level-0 pixels, square) a split gets."""

    n_slides: int
    size_px: int


@dataclass(frozen=True)
class DemoSettings:
    """Everything that defines a demo run (the stage caches hash the parts each stage uses).

    Attributes
    ----------
    seed
        Base seed: data splits use ``seed * 1000 + {0, 1, 2}`` (train, val, test), training
        ``train.seed = sampling.seed = seed``.
    splits
        Slides per split (``train``, ``val``, ``test``).
    slide_mpp
        Level-0 mpp of the synthetic slides (µm/px).
    train
        Dotted overrides applied to every packaged recipe (``mrseg.training.config.update_config``), the
        demo's shared recipe on top of ``configs/synthetic_*.yaml``.
    overlap
        Tile overlap of whole-slide prediction (fraction of a tile).
    eval_mpp
        Resolution of the pixel-level evaluation grid (µm/px).
    device
        ``auto``, ``cpu``, ``cuda``...
    workers
        Processes generating slides and threads reading tiles during prediction (training keeps its
        recipe's ``data.num_workers`` and ``train.num_threads``).
    models
        Which of :data:`MODELS` to run (keys); all six by default.
    preset
        Name of the preset the settings came from (informational, not hashed).
    """

    seed: int = 0
    splits: dict[str, SplitSize] = field(
        default_factory=lambda: {
            "train": SplitSize(8, 2048),
            "val": SplitSize(2, 2048),
            "test": SplitSize(3, 2048),
        }
    )
    slide_mpp: float = 0.5
    train: dict[str, Any] = field(
        default_factory=lambda: {
            "train.epochs": 16,
            "train.steps_per_epoch": 16,
            "train.batch_size": 16,
            "sampling.val_samples": 128,
        }
    )
    overlap: float = 0.25
    eval_mpp: float = 2.0
    device: str = "auto"
    workers: int = 2
    models: tuple[str, ...] = tuple(m.key for m in MODELS)
    preset: str = "default"

    def model_specs(self) -> list[ModelSpec]:
        """The selected :class:`ModelSpec` objects, in the paper's order."""
        return [m for m in MODELS if m.key in self.models]

    def split_seed(self, split: str) -> int:
        """Seed of one split's slides (different for train, val and test)."""
        return self.seed * 1000 + SPLITS.index(split)

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (for results.json)."""
        return asdict(self)


def default_settings(**changes: Any) -> DemoSettings:
    """The default run (about 10 minutes on an idle 2-core CPU; see docs/results.md)."""
    return replace(DemoSettings(), **changes)


def quick_settings(**changes: Any) -> DemoSettings:
    """A minute-scale smoke run: small slides, two epochs of a few steps (numbers are not meaningful)."""
    base = DemoSettings(
        splits={"train": SplitSize(2, 1536), "val": SplitSize(1, 1536), "test": SplitSize(1, 1536)},
        train={
            "train.epochs": 2,
            "train.steps_per_epoch": 2,
            "train.batch_size": 8,
            "sampling.val_samples": 16,
        },
        overlap=0.0,
        preset="quick",
    )
    return replace(base, **changes)
