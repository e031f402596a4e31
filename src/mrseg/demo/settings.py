"""What the demo runs: the six models, the data-set sizes and the shared small training recipe.

Two presets: :func:`default_settings` (recipe R3e80, chosen on validation data; 13.5-15 minutes on an
idle 2-core Zen 4 EPYC, about 10.5 on a Zen 5; docs/results.md) and
:func:`quick_settings` (about half a minute: tiny slides, a few steps; for CI). Every size is in pixels at
the slides' level-0 mpp (0.5 µm/px unless ``slide_mpp`` says otherwise).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mrseg.core.errors import ConfigError

#: Data splits, in the order they are generated. ``test`` never takes part in training or model selection.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Every split name a demo may generate, in the order that fixes its seed offset (``seed * 1000 + index``).
#: ``val2`` is an optional second validation split (never used for training or model selection), for
#: tuning a recipe without looking at ``test`` (``eval_splits=("val", "val2")``).
SPLIT_SEED_INDEX: dict[str, int] = {"train": 0, "val": 1, "test": 2, "val2": 3}
#: The demo's shared recipe on top of the packaged ``synthetic_*`` configs (both presets).
RECIPE: dict[str, Any] = {
    # the decoupled (AdamW) reading of the paper's L2 (docs/training.md "L2", docs/results.md)
    "train.l2_mode": "decoupled",
    # the scanner and stain variation between slides (the generator blurs each slide by 0.1-0.45 µm and
    # varies its stain by up to 0.06): with 16 training slides, recipe R3, chosen on validation data
    # (docs/results.md), trained for 80 epochs (R3e80, chosen in session 13 on the tuning seeds'
    # validation slides by a rule set beforehand: every check passes and the MRNs' mean margins clear
    # twice their standard error; 80 is the most that fits the 15-minute ceiling on a 2-core
    # Zen 4; 64 had replaced 48 in session 10, 48 had replaced 24 in session 9)
    "augment.blur_um": 0.45,
    "augment.hed": 0.06,
    # speed only: channels-last layout, validation patches read once, loading in the trainer
    # (with jobs=2 each model's process keeps one core busy)
    "train.channels_last": True,
    "sampling.val_cache": True,
    "data.num_workers": 0,
}


def default_jobs() -> int:
    """Models trained at once by default: one per CPU core, at most 2."""
    return min(2, os.cpu_count() or 1)


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
        Base seed: data splits use ``seed * 1000 + {0, 1, 2, 3}`` (train, val, test, val2), training
        ``train.seed = sampling.seed = seed``.
    splits
        Slides per split (``train``, ``val``, ``test``; ``val2`` optional).
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
    eval_splits
        Splits that are predicted, evaluated and scored on mimics (``val`` and ``test`` by default).
        Without ``test`` the test slides are neither generated nor predicted and no HTML/Markdown
        report is written (``results.json`` only): the mode for tuning a recipe on validation data.
    jobs
        Models trained (and predicted) at the same time, one process each with one torch thread (2 on a
        2-core CPU keeps both cores busy). Results do not depend on it (it is not part of any stage key).
    preset
        Name of the preset the settings came from (informational, not hashed).
    """

    seed: int = 0
    splits: dict[str, SplitSize] = field(
        default_factory=lambda: {
            "train": SplitSize(16, 2048),
            "val": SplitSize(4, 2048),
            "test": SplitSize(3, 2048),
        }
    )
    slide_mpp: float = 0.5
    train: dict[str, Any] = field(
        default_factory=lambda: {
            "train.epochs": 80,
            "train.steps_per_epoch": 16,
            "train.batch_size": 16,
            "sampling.val_samples": 128,
            **RECIPE,
        }
    )
    overlap: float = 0.25
    eval_mpp: float = 2.0
    device: str = "auto"
    workers: int = 2
    models: tuple[str, ...] = tuple(m.key for m in MODELS)
    eval_splits: tuple[str, ...] = ("val", "test")
    jobs: int = field(default_factory=default_jobs)
    preset: str = "default"

    def model_specs(self) -> list[ModelSpec]:
        """The selected :class:`ModelSpec` objects, in the paper's order."""
        return [m for m in MODELS if m.key in self.models]

    def split_seed(self, split: str) -> int:
        """Seed of one split's slides (different for train, val, test and val2)."""
        return self.seed * 1000 + SPLIT_SEED_INDEX[split]

    def data_splits(self) -> list[str]:
        """Splits to generate: train, val, then every other evaluated split (in :data:`SPLIT_SEED_INDEX` order).

        Raises
        ------
        ConfigError
            An evaluated split is unknown or has no slide counts in ``splits``.
        """
        wanted = {"train", "val", *self.eval_splits}
        unknown = wanted - set(SPLIT_SEED_INDEX)
        if unknown:
            raise ConfigError(f"unknown split(s) {sorted(unknown)}; known: {list(SPLIT_SEED_INDEX)}")
        missing = wanted - set(self.splits)
        if missing:
            raise ConfigError(f"no slide counts for split(s) {sorted(missing)} in settings.splits")
        return [s for s in SPLIT_SEED_INDEX if s in wanted]

    def shown_split(self) -> str:
        """The split whose mimics, panel and close-up the report shows: ``test``, else the last evaluated one."""
        evaluated = [s for s in self.data_splits() if s in self.eval_splits]
        return "test" if "test" in evaluated else evaluated[-1]

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (for results.json)."""
        return asdict(self)


def default_settings(**changes: Any) -> DemoSettings:
    """The default run (13.5-15 minutes on an idle 2-core Zen 4 CPU; see docs/results.md)."""
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
            **RECIPE,
        },
        overlap=0.0,
        preset="quick",
    )
    return replace(base, **changes)
