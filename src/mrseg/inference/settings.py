"""The settings of a prediction run that are not in the checkpoint (torch-free: the CLI reads its defaults here).

:class:`PredictSettings` is the one definition of ``mrseg predict``'s options. Everything
shape-defining (mpps, patch size, normalisation, label spec) comes from the checkpoint instead.
Two settings default to the checkpoint's values and are made concrete by :meth:`PredictSettings.resolve`
before a slide is predicted: the tissue-detection settings (the checkpoint's training tissue
settings, else :class:`~mrseg.core.tissue_spec.TissueSettings`'s defaults) and, by the predictor,
the device (``"auto"``). :meth:`PredictSettings.identity` of the resolved settings is the
resumability key recorded in every ``<stem>.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from enum import Enum
from typing import Any

from mrseg.core.errors import ConfigError
from mrseg.core.tissue_spec import TissueSettings


class Ramp(str, Enum):
    """Shape of the per-tile blending weight of the merger."""

    LINEAR = "linear"
    GAUSSIAN = "gaussian"
    CONSTANT = "constant"


#: Compute precisions: exact fp32, bf16 autocast, or bf16 only where the device computes it natively.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "auto")

#: Inference engines: eager PyTorch, ``torch.compile`` (Inductor, frozen weights), ONNX Runtime (CPU).
ENGINES: tuple[str, ...] = ("torch", "compile", "onnx")

#: Writers run by default (names of :mod:`mrseg.inference.writers`; the JSON record is always written, last).
DEFAULT_WRITERS: tuple[str, ...] = ("tiff", "labels", "overlay")

#: Settings that say how a run is executed, not what it computes (left out of :meth:`PredictSettings.identity`).
RUN_ONLY: tuple[str, ...] = (
    "device",
    "engine",
    "backend",
    "batch_size",
    "loader_threads",
    "prefetch",
    "loader_nice",
    "writer_threads",
)


@dataclass(frozen=True)
class PredictSettings:
    """Everything about a prediction run that is not in the checkpoint.

    Attributes
    ----------
    device
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``
        (:func:`mrseg.core.device.resolve_device`).
    backend
        Slide backend passed to :meth:`mrseg.wsi.slide.Slide.open` (``"auto"``, ``"openslide"``,
        ``"tiffslide"``...).
    precision
        ``"fp32"``, ``"bf16"`` (autocast) or ``"auto"`` (bf16 where the device computes it natively).
    engine
        What runs the network (:data:`ENGINES`): ``"torch"`` (eager, batch norm folded into the
        convolutions, channels-last), ``"compile"`` (the same through ``torch.compile``: a minute or
        more of compilation per process) or ``"onnx"`` (ONNX Runtime on the CPU, through the ONNX
        export, cached per checkpoint; needs ``mrseg[onnx]``). Like the device, the engine changes
        the probabilities only by floating-point rounding, so it is not part of :meth:`identity`.
    batch_size
        Tiles per model forward.
    overlap
        Fraction of a tile shared with its neighbour (0 <= overlap < 1).
    tissue_mask
        Predict only tiles touching tissue (:mod:`mrseg.wsi.tissue`); False: the whole slide.
    tissue
        Tissue-detection settings; None: the checkpoint's (the ones it was trained with), else the
        defaults.
    tissue_mpp
        Resolution of the tissue mask (microns per pixel), applied last on top of ``tissue`` (or the
        checkpoint's); None: keep theirs.
    slide_mpp
        Level-0 microns per pixel of the slides, overriding their metadata (slides without, or with
        wrong, metadata); None: the metadata's.
    out_mpp
        Map resolution in microns per map pixel (>= the model's finest mpp); None: the model's finest mpp.
    ramp
        Blending weight (``linear``, ``gaussian``, ``constant``).
    float16
        Store probabilities as float16 instead of uint8 (x 255).
    writers
        Outputs to write, by writer name (:mod:`mrseg.inference.writers`): ``tiff`` (probability
        maps), ``labels`` (label map of multi-class tasks), ``overlay`` (PNG), ``geojson``
        (polygons), or a writer registered by the caller. The JSON record is always written.
    threshold
        Probability threshold of the GeoJSON polygons.
    chunk_tiles
        Chunk edge in tiles (a chunk of ``chunk_tiles**2`` tiles shares its level reads).
    loader_threads
        Threads reading chunks (each with its own slide handle).
    prefetch
        Chunks in flight ahead of the model.
    loader_nice
        Scheduling niceness added to the loader threads (Linux): on a CPU device the model's
        threads keep the cores and reading fills the gaps (0, the default, disables it).
    writer_threads
        Writers run at once after the tile loop (:meth:`~mrseg.inference.writers.base.Writer.concurrent`
        ones: every built-in writer); 1 runs them one after the other.
    """

    device: str = "auto"
    backend: str = "auto"
    precision: str = "fp32"
    engine: str = "torch"
    batch_size: int = 16
    overlap: float = 0.25
    tissue_mask: bool = True
    tissue: TissueSettings | None = None
    tissue_mpp: float | None = None
    slide_mpp: float | None = None
    out_mpp: float | None = None
    ramp: str = Ramp.LINEAR.value
    float16: bool = False
    writers: tuple[str, ...] = DEFAULT_WRITERS
    threshold: float = 0.5
    chunk_tiles: int = 8
    loader_threads: int = 2
    prefetch: int = 2
    loader_nice: int = 0
    writer_threads: int = 2

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < 1:
            raise ConfigError(f"overlap must be in [0, 1), got {self.overlap}")
        counts = (self.batch_size, self.chunk_tiles, self.loader_threads, self.prefetch, self.writer_threads)
        if min(counts) < 1:
            raise ConfigError("batch_size, chunk_tiles, loader_threads, prefetch and writer_threads must be >= 1")
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.ramp not in {r.value for r in Ramp}:
            raise ConfigError(f"ramp must be one of {[r.value for r in Ramp]}, got {self.ramp!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be fp32, bf16 or auto, got {self.precision!r}")
        if self.engine not in ENGINES:
            raise ConfigError(f"engine must be one of {list(ENGINES)}, got {self.engine!r}")
        for name in ("tissue_mpp", "slide_mpp", "out_mpp"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{name} ({flag}) must be a positive number of microns per pixel, got {value!r}")
        if isinstance(self.writers, str) or not all(isinstance(w, str) and w for w in self.writers):
            raise ConfigError(f"writers must be a sequence of writer names, got {self.writers!r}")
        object.__setattr__(self, "writers", tuple(dict.fromkeys(self.writers)))

    def tissue_settings(self, checkpoint_tissue: TissueSettings | None = None) -> TissueSettings:
        """Tissue settings of this run: ``tissue``, else the checkpoint's, else the defaults; then ``tissue_mpp``."""
        base = self.tissue or checkpoint_tissue or TissueSettings()
        return base if self.tissue_mpp is None else replace(base, mpp=self.tissue_mpp)

    def resolve(self, checkpoint_tissue: TissueSettings | None = None) -> PredictSettings:
        """These settings with the tissue settings made concrete (``tissue`` set, ``tissue_mpp`` folded in)."""
        return replace(self, tissue=self.tissue_settings(checkpoint_tissue), tissue_mpp=None)

    def identity(self) -> dict[str, Any]:
        """The settings that change the outputs, as plain JSON values (resumability compares these).

        Call it on :meth:`resolve`'d settings: the record then holds the tissue settings actually
        used. Device, backend, batch size and threads are left out (:data:`RUN_ONLY`).
        """
        d = asdict(self)
        for key in RUN_ONLY:
            d.pop(key)
        d["tissue"] = self.tissue.to_dict() if self.tissue is not None else None
        d["writers"] = list(self.writers)
        return d


__all__ = ["DEFAULT_WRITERS", "ENGINES", "PRECISIONS", "RUN_ONLY", "PredictSettings", "Ramp"]
