"""Whole-slide inference (MONAI's ``PatchInferer``): splitter -> chunk reader -> predictor -> merger.

:func:`predict_slide` plans the slide (:func:`plan_slide`: resolution check, tissue mask, tile
grid, map shape), then streams the chunks read by loader threads through the
:class:`~mrseg.inference.predictor.Predictor` into a :class:`~mrseg.inference.merger.Merger`
(:func:`merge_tiles`). The result is the on-disk probability map at ``out_mpp`` (default: the
model's finest mpp ``m1``): map pixel ``(u, v)`` covers level-0 ``[u*d, (u+1)*d) x [v*d, (v+1)*d)``
with ``d = out_mpp / slide mpp``. The tile grid (:mod:`mrseg.inference.splitter`) is laid out at
``m1``; its tiles are resampled (area) to ``out_mpp`` before merging.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrseg.core.device import resolve_device
from mrseg.core.errors import ConfigError, SlideError
from mrseg.core.input_spec import InputSpec
from mrseg.core.memory import keep_freed_heap, release_memory
from mrseg.core.tissue_spec import TissueSettings
from mrseg.inference.merger import Merger, OnDiskMerger, ProbabilityMap
from mrseg.inference.predictor import ModelFn, Predictor
from mrseg.inference.reader import ChunkReader, read_chunks
from mrseg.inference.settings import PredictSettings
from mrseg.inference.splitter import Tiling, make_tiling, tissue_filter
from mrseg.models.checkpoint import Checkpoint
from mrseg.wsi.slide import Slide
from mrseg.wsi.tissue import tissue_mask

log = logging.getLogger(__name__)

#: Relative tolerance between the slide's level-0 mpp and the model's finest mpp.
MPP_TOLERANCE = 0.02

#: Edge of the output map's chunks in map pixels (the merger's unit of storage and of finishing).
MAP_CHUNK_PX = 512

#: Called with ``(tiles done, tiles total)`` after every batch.
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class SlidePlan:
    """What :func:`plan_slide` decides before any tile is read.

    Attributes
    ----------
    tiling
        The tiles to predict, at the model's finest mpp.
    map_shape
        ``(height, width)`` of the output map in map pixels (at ``map_mpp``).
    map_mpp
        Microns per output map pixel (``out_mpp`` or the model's finest mpp).
    scale
        Tiling pixels -> output map pixels (``finest mpp / map_mpp``, <= 1).
    out_tile_px
        Edge of a tile in output map pixels.
    tissue_fraction
        Fraction of the slide that is tissue (None without a tissue mask).
    """

    tiling: Tiling
    map_shape: tuple[int, int]
    map_mpp: float
    scale: float
    out_tile_px: int
    tissue_fraction: float | None

    def boxes_map(self, index: np.ndarray) -> np.ndarray:
        """Output-map boxes ``(x0, y0, x1, y1)`` (int64 ``(n, 4)``, map pixels) of tiles ``index``."""
        origins = np.rint(self.tiling.origins_map[index] * self.scale).astype(np.int64)
        return np.concatenate([origins, origins + self.out_tile_px], axis=1)


@dataclass
class SlidePrediction:
    """Result of :func:`predict_slide`: the on-disk map and what it took."""

    map: ProbabilityMap
    tiling: Tiling
    slide_dimensions: tuple[int, int]
    slide_mpp: float
    timings: dict[str, float] = field(default_factory=dict)
    tissue_fraction: float | None = None
    pixels_read: int | None = None


def check_resolution(slide_path: Path, slide_mpp: float, model_mpp: float) -> None:
    """Refuse slides whose finest level is coarser than the model's finest mpp (beyond 2%)."""
    if slide_mpp > model_mpp * (1.0 + MPP_TOLERANCE):
        raise SlideError(
            f"{slide_path}: slide resolution {slide_mpp:.4g} µm/px is coarser than the model's finest input "
            f"{model_mpp:.4g} µm/px (tolerance {MPP_TOLERANCE:.0%}); the model cannot be applied "
            "(check the slide's mpp or pass --slide-mpp if its metadata is wrong)"
        )


def plan_slide(slide: Slide, spec: InputSpec, settings: PredictSettings, tissue: TissueSettings) -> SlidePlan:
    """Check the slide against the model, detect tissue (unless disabled) and lay out tiles and map.

    Raises
    ------
    SlideError
        The slide is coarser than the model's finest mpp.
    ConfigError
        ``settings.out_mpp`` is finer than the model's finest mpp.
    """
    finest = spec.mpps[0]
    check_resolution(slide.path, slide.mpp, finest)
    out_mpp = settings.out_mpp or finest
    if out_mpp < finest * (1 - 1e-6):
        raise ConfigError(f"out_mpp {out_mpp} is finer than the model's finest mpp {finest}")
    dims = (int(slide.dimensions[0]), int(slide.dimensions[1]))
    tissue_fraction, keep = None, None
    if settings.tissue_mask:
        mask = tissue_mask(slide, tissue)
        tissue_fraction, keep = float(mask.fraction), tissue_filter(mask)
    tiling = make_tiling(dims, slide.mpp, finest, spec.size_px, settings.overlap, settings.chunk_tiles, keep)
    if keep is not None:
        del mask, keep
        release_memory(collect=False)  # the detection's freed work arrays, before the loaders allocate
    scale = finest / out_mpp
    w0, h0 = dims
    map_shape = (max(1, round(h0 * slide.mpp / out_mpp)), max(1, round(w0 * slide.mpp / out_mpp)))
    out_tile = max(1, round(spec.size_px * scale))
    return SlidePlan(tiling, map_shape, out_mpp, scale, out_tile, tissue_fraction)


def open_merger(plan: SlidePlan, channels: int, workdir: Path, settings: PredictSettings) -> Merger:
    """The on-disk merger of ``plan``'s map (scratch arrays under ``workdir / "merger"``).

    It is told every tile's box, so a map chunk is divided, encoded and stored as soon as its last
    tile is in: the sums in memory are those of the chunks the loop is crossing, not of all the
    tissue so far (the map is the same bytes either way).
    """
    return OnDiskMerger(
        workdir / "merger",
        plan.map_shape,
        channels,
        mpp=plan.map_mpp,
        ramp=settings.ramp,
        chunk=MAP_CHUNK_PX,
        out_dtype="float16" if settings.float16 else "uint8",
        expected=plan.boxes_map(np.arange(plan.tiling.n_tiles)),
    )


def merge_tiles(
    predictor: Predictor,
    reader: ChunkReader,
    plan: SlidePlan,
    merger: Merger,
    settings: PredictSettings,
    progress: ProgressCallback | None = None,
) -> float:
    """Predict every tile of ``plan`` chunk by chunk, batch by batch, into ``merger``; return the model seconds."""
    model_s, done, total = 0.0, 0, plan.tiling.n_tiles
    for index, patches in read_chunks(reader, settings.loader_threads, settings.prefetch, settings.loader_nice):
        for start in range(0, len(index), settings.batch_size):
            batch = slice(start, start + settings.batch_size)
            x = predictor.preprocess(patches[batch])
            t0 = time.perf_counter()
            prob = predictor.predict(x)
            model_s += time.perf_counter() - t0
            merger.aggregate(prob, plan.boxes_map(index[batch]))
            done += len(index[batch])
            if progress is not None:
                progress(done, total)
    return model_s


@contextmanager
def _opened(slide: Slide | str | Path, settings: PredictSettings) -> Iterator[Slide]:
    if isinstance(slide, Slide):
        yield slide
        return
    with Slide.open(slide, backend=settings.backend, mpp=settings.slide_mpp) as opened:
        yield opened


def make_predictor(model: ModelFn, checkpoint: Checkpoint, plan: SlidePlan, settings: PredictSettings) -> Predictor:
    """The predictor of ``plan``'s tiles: inputs go to the model's device (else ``settings.device``)."""
    device = getattr(model, "device", None) or resolve_device(settings.device)
    return Predictor(model, checkpoint.input_spec, checkpoint.labels, plan.out_tile_px, device)


def predict_slide(
    model: ModelFn,
    checkpoint: Checkpoint,
    slide: Slide | str | Path,
    workdir: str | Path,
    settings: PredictSettings = PredictSettings(),
    *,
    progress: ProgressCallback | None = None,
) -> SlidePrediction:
    """Predict one slide into an on-disk probability map under ``workdir``.

    Parameters
    ----------
    model
        The checkpoint's network prepared for inference (:func:`~mrseg.inference.predictor.prepare_model`),
        or any callable ``float32 (N, J, 3, S, S) -> logits``.
    checkpoint
        Supplies the input spec (mpps, patch size, normalisation), the label spec (the class rule)
        and the training tissue settings (used unless ``settings`` overrides them).
    slide
        An open slide (its handle gives the dimensions, mpp and tissue mask; the loader threads
        open their own handles with ``settings.backend`` and ``settings.slide_mpp``), or its path.
    workdir
        Scratch folder of the merger (the map's zarr arrays live there until written out).
    settings
        See :class:`~mrseg.inference.settings.PredictSettings`.
    progress
        Called with ``(tiles done, tiles total)`` after every batch.

    Raises
    ------
    MissingMppError
        The slide has no mpp and ``settings.slide_mpp`` is not given.
    SlideError
        Slide coarser than the model, or a region cannot be read (the message names the location).
    """
    t0 = time.perf_counter()
    with _opened(slide, settings) as handle:
        plan = plan_slide(handle, checkpoint.input_spec, settings, settings.tissue_settings(checkpoint.tissue))
        path, dims, slide_mpp = handle.path, (int(handle.dimensions[0]), int(handle.dimensions[1])), float(handle.mpp)
    timings = {"open_and_tissue_s": time.perf_counter() - t0}
    predictor = make_predictor(model, checkpoint, plan, settings)
    keep_freed_heap()  # each batch's tensors reuse the last one's memory (core.memory)
    merger = open_merger(plan, predictor.channels, Path(workdir), settings)
    if plan.tiling.n_tiles == 0:
        log.warning("%s: no tissue found; writing an empty probability map", path)
        if progress is not None:
            progress(0, 0)
    t1 = time.perf_counter()
    with ChunkReader(path, settings.backend, settings.slide_mpp, checkpoint.input_spec, plan.tiling) as reader:
        model_s = merge_tiles(predictor, reader, plan, merger, settings, progress)
        pmap = merger.finalize()
        pixels_read = reader.pixels_read
    timings.update(tiles_s=time.perf_counter() - t1, model_s=model_s)
    return SlidePrediction(pmap, plan.tiling, dims, slide_mpp, timings, plan.tissue_fraction, pixels_read)


__all__ = [
    "MAP_CHUNK_PX",
    "MPP_TOLERANCE",
    "ProgressCallback",
    "SlidePlan",
    "SlidePrediction",
    "check_resolution",
    "make_predictor",
    "merge_tiles",
    "open_merger",
    "plan_slide",
    "predict_slide",
]
