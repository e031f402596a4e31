"""The sections of the training configuration (``model``, ``data``, ``sampling``, ``augment``, ``train``, ``output``).

Each is a frozen pydantic model with unknown keys forbidden; :class:`mrseg.training.config.Config`
puts them (and the ``labels`` section, a :class:`~mrseg.core.label_spec.LabelSpec`) together.
Units: mpp values are microns per pixel; ``patch_size`` is pixels at each patch's own mpp;
``jitter_um`` is microns.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidatorFunctionWrapHandler, field_validator, model_validator

from mrseg.core.errors import ConfigError
from mrseg.core.input_spec import DEFAULT_MEAN, DEFAULT_STD, InputSpec, check_mpps
from mrseg.core.tissue_spec import TissueSettings
from mrseg.models.registry import model_names
from mrseg.wsi.backends.registry import check_backend

log = logging.getLogger(__name__)


class Section(BaseModel):
    """Base of every section: frozen, unknown keys forbidden."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def core_type(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Validate a core dataclass field, turning its :class:`ConfigError` into a pydantic error (keeps the key)."""
    try:
        return handler(value)
    except ConfigError as error:
        raise ValueError(str(error)) from None


class ModelConfig(Section):
    """Network and input definition (everything that shapes the model; stored in checkpoints)."""

    name: str = Field(default="mrn_bilinear", description="a registered architecture (mrseg.models.model_names())")
    mpps: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    patch_size: int = Field(default=512, gt=0, description="edge of every square patch, pixels at its own mpp")
    num_classes: int = Field(
        default=1, ge=1, description="output channels: labels.num_outputs (1: sigmoid + BCE; C: softmax + CE)"
    )
    width: int = Field(default=32, gt=0, description="channels of the first encoder stage")
    depth: int = Field(default=4, gt=0, description="number of down-sampling stages")
    mean: tuple[float, float, float] = DEFAULT_MEAN
    std: tuple[float, float, float] = DEFAULT_STD
    kwargs: dict[str, Any] = Field(default_factory=dict, description="extra create_model keyword arguments")
    pretrained: str | None = Field(
        default=None,
        description="backbone weights for a timm encoder (model.kwargs.encoder): a local file (.safetensors, "
        ".pth) or a timm name already in the Hugging Face cache; never downloaded",
    )

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        if v not in model_names():
            raise ValueError(f"unknown model {v!r}; choose one of {model_names()}")
        return v

    @field_validator("mpps", mode="before")
    @classmethod
    def _mpps_rule(cls, v: Any) -> tuple[float, ...]:
        try:
            return check_mpps(v, what="mpps")
        except ConfigError as error:
            raise ValueError(str(error)) from None

    @model_validator(mode="after")
    def _unet_single(self) -> ModelConfig:
        if self.name == "unet" and len(self.mpps) != 1:
            raise ValueError(f"model 'unet' takes exactly one mpp, got {list(self.mpps)} (set model.mpps=[X])")
        return self

    def input_spec(self) -> InputSpec:
        """The :class:`~mrseg.core.input_spec.InputSpec` stored in checkpoints."""
        return InputSpec(mpps=self.mpps, size_px=self.patch_size, mean=self.mean, std=self.std)

    def create_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`mrseg.models.create_model` (besides the name)."""
        return {
            "mpps": list(self.mpps),
            "num_classes": self.num_classes,
            "width": self.width,
            "depth": self.depth,
            **self.kwargs,
        }


class DataConfig(Section):
    """Where the slides are, which to drop, how to split them and how tissue is detected for sampling."""

    path: str | None = Field(default=None, description="manifest (CSV/YAML), CAMELYON16 folder or synth folder")
    exclude: tuple[str, ...] = Field(default=(), description="slide names (file stems) to leave out")
    val_fraction: float = Field(default=0.2, ge=0.0, lt=1.0, description="held-out share of slides")
    split: Literal["auto", "manifest", "random"] = "auto"
    split_seed: int = 0
    backend: str = Field(default="auto", description="slide backend: auto, openslide, tiffslide or a registered name")
    tissue: TissueSettings = Field(
        default_factory=TissueSettings, description="tissue detection of sampling (stored in checkpoints)"
    )
    num_workers: int = Field(default=2, ge=0, description="DataLoader worker processes per training process")
    prefetch_factor: int = Field(default=4, ge=1)

    _tissue = field_validator("tissue", mode="wrap")(core_type)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        try:
            return str(check_backend(v))
        except ConfigError as error:
            raise ValueError(str(error)) from None

    @model_validator(mode="before")
    @classmethod
    def _migrate_tissue_mpp(cls, data: Any) -> Any:
        """Read the deprecated ``data.tissue_mpp`` as ``data.tissue.mpp``."""
        if not isinstance(data, dict) or "tissue_mpp" not in data:
            return data
        data = dict(data)
        mpp = data.pop("tissue_mpp")
        tissue = data.get("tissue")
        tissue = dict(tissue) if isinstance(tissue, dict) else {}
        if "mpp" in tissue and tissue["mpp"] != mpp:
            raise ValueError(f"tissue_mpp={mpp} (deprecated) and tissue.mpp={tissue['mpp']} disagree; keep tissue.mpp")
        log.warning("data.tissue_mpp is deprecated: write data.tissue.mpp (read as data.tissue.mpp=%s)", mpp)
        data["tissue"] = {**tissue, "mpp": mpp}
        return data


class SamplingConfig(Section):
    """How patch centres are drawn (level-0 pixels, inside tissue)."""

    positive_fraction: float = Field(default=0.5, ge=0.0, le=1.0, description="share of centres in positive regions")
    jitter_um: float = Field(default=0.0, ge=0.0, description="uniform +- jitter of each centre, microns")
    val_samples: int = Field(default=256, gt=0, description="fixed, seeded validation centres (all ranks together)")
    val_positive_fraction: float | None = Field(
        default=None, ge=0.0, le=1.0, description="share of validation centres in positive regions (None: as training)"
    )
    val_cache: bool = Field(
        default=False, description="keep the fixed validation patches in memory after the first epoch (read once)"
    )
    hard_negative_fraction: float = Field(
        default=0.0, ge=0.0, le=1.0, description="share of training centres drawn from mined false positives"
    )
    hard_negative_epochs: tuple[int, ...] = Field(
        default=(), description="mine hard negatives on the training slides after these epochs (empty: never)"
    )
    hard_negative_candidates: int = Field(default=1024, gt=0, description="centres scored per mining round")
    hard_negative_threshold: float = Field(default=0.5, gt=0.0, lt=1.0, description="probability of a positive pixel")
    hard_negative_min_fp: float = Field(
        default=0.05, gt=0.0, le=1.0, description="share of a candidate's pixels that must be false positives"
    )
    seed: int = 0


class AugmentConfig(Section):
    """Training augmentation (never applied in validation); colour magnitudes are +- ranges."""

    enabled: bool = True
    flips: bool = True
    rot90: bool = True
    brightness: float = Field(default=0.1, ge=0.0, description="additive, fraction of full range")
    contrast: float = Field(default=0.1, ge=0.0, description="multiplicative about the mean")
    saturation: float = Field(default=0.1, ge=0.0, description="multiplicative blend with grey")
    hed: float = Field(default=0.03, ge=0.0, description="H&E optical-density jitter (scale and shift sigma)")
    blur_um: float = Field(
        default=0.0,
        ge=0.0,
        le=8.0,
        description="Gaussian blur (scanner focus): sigma drawn U(0, blur_um) microns per sample, "
        "sigma_um / mpp_j pixels in patch j (0: off)",
    )


class TrainConfig(Section):
    """Optimisation (the paper's recipe by default)."""

    epochs: int = Field(default=500, ge=1)
    steps_per_epoch: int = Field(default=100, ge=1, description="optimiser steps per epoch and process")
    batch_size: int = Field(default=16, ge=1, description="patches per step and process")
    lr: float = Field(default=1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(default=1e-8, gt=0)
    l2: float = Field(default=0.005, ge=0.0, description="Keras L2: l2 * sum(w^2), conv weights")
    l2_mode: Literal["sum", "half_sum", "decoupled"] = Field(
        default="sum",
        description="sum: loss + l2*sum(w^2) (Keras l2); half_sum: loss + l2*sum(w^2)/2 (TensorFlow l2_loss); "
        "decoupled: no loss term, AdamW-style decay w -= lr*l2*w of the same conv weights",
    )
    data_reduction: Literal["mean", "sum_examples"] = Field(
        default="mean",
        description="data loss of a batch: mean over examples and pixels, or summed over the batch's examples "
        "(per-example pixel mean; the paper's Eq. 1 read literally); only its ratio to the L2 term matters to Adam",
    )
    channels_last: bool = Field(default=False, description="channels-last layout of weights and inputs in training")
    dice_weight: float = Field(default=0.0, ge=0.0, description="weight of a soft-Dice term added to BCE/CE")
    ema: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="decay per step of an exponential moving average of the weights and BatchNorm statistics "
        "(0: off); validation, best.pt and the returned model then use the average",
    )
    select: Literal["val_loss", "val_auc", "last"] = Field(
        default="val_loss",
        description="best.pt: lowest validation loss, highest validation pixel AUC, or the last epoch "
        "(also what early stopping and the plateau scheduler follow)",
    )
    patience: int | None = Field(default=None, ge=1, description="early stopping: epochs without val improvement")
    scheduler: Literal["none", "plateau", "cosine", "step"] = "none"
    scheduler_factor: float = Field(default=0.5, gt=0.0, lt=1.0, description="plateau/step LR factor")
    scheduler_patience: int = Field(default=10, ge=0, description="plateau: epochs to wait")
    scheduler_step: int = Field(default=50, ge=1, description="step: epochs between decays")
    amp: Literal["none", "bf16", "fp16"] = "none"
    sync_batchnorm: bool = False
    seed: int = 0
    deterministic: bool = True
    num_threads: int = Field(default=0, ge=0, description="torch intra-op threads of the trainer (0: default)")
    keep_freed_heap: bool = Field(
        default=True,
        description="glibc: keep freed memory for the next step's tensors (core.memory.keep_freed_heap); "
        "1.3-1.4x faster steps at 256 px, none needed for 64-px patches",
    )


class OutputConfig(Section):
    """What the run folder gets besides checkpoints and metrics.csv."""

    progress: bool = Field(default=True, description="rich progress bars (off automatically when not a TTY)")
    tensorboard: bool = True
    plot: bool = True
