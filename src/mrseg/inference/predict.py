"""Whole-slide prediction: splitter -> concentric chunk reads -> model -> on-disk merger -> outputs.

The **map** is the probability map at the model's finest mpp ``m1`` (or a coarser ``out_mpp``):
map pixel ``(u, v)`` covers the level-0 area ``[u*d, (u+1)*d) x [v*d, (v+1)*d)`` with
``d = m1 / slide.mpp``. Tiles are ``S x S`` map pixels (``S`` = the checkpoint's patch size) on a
regular grid with stride ``round(S * (1 - overlap))``, starting at the slide's top-left corner;
tiles running past the right/bottom edge read white, as in training. The grid is cut into square
**chunks** of ``chunk_tiles x chunk_tiles`` tiles; each chunk's concentric inputs come from one
:func:`mrseg.wsi.concentric.read_concentric_grid` call (each level read once per chunk). Chunks are
read by a small thread pool ahead of the model (a bounded prefetch window), so slide I/O and
decoding overlap compute. Model outputs are blended into an :class:`mrseg.inference.merger.OnDiskMerger`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrseg.core.errors import ConfigError, MrsegError, SlideError
from mrseg.core.tissue_spec import DEFAULT_TISSUE_MPP, TissueSettings
from mrseg.inference.merger import OnDiskMerger, ProbabilityMap, Ramp
from mrseg.models.activation import foreground_probabilities
from mrseg.models.checkpoint import Checkpoint
from mrseg.models.inputs import to_tensor

log = logging.getLogger(__name__)

#: Relative tolerance between the slide's level-0 mpp and the model's finest mpp.
MPP_TOLERANCE = 0.02

#: A prepared model: float32 ``(N, J, 3, H, W)`` -> logits ``(N, C, H, W)`` (an ``nn.Module`` also fits).
ModelFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class PredictSettings:
    """Everything about a prediction run that is not in the checkpoint.

    Attributes
    ----------
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    precision
        ``"fp32"``, ``"bf16"`` (autocast) or ``"auto"`` (bf16 where the device computes it natively).
    batch_size
        Tiles per model forward.
    overlap
        Fraction of a tile shared with its neighbour (0 <= overlap < 1).
    tissue_mask
        Predict only tiles touching tissue (``mrseg.wsi.tissue``); False: the whole slide.
    tissue_mpp
        Resolution of the tissue mask (microns per pixel).
    mpp
        Level-0 mpp override for slides without (or with wrong) metadata.
    out_mpp
        Map resolution (>= the model's finest mpp); None: the model's finest mpp.
    ramp
        Blending weight (``linear``, ``gaussian``, ``constant``).
    float16
        Store probabilities as float16 instead of uint8 (x 255).
    geojson
        Also write polygons of regions with probability >= ``threshold``.
    threshold
        Probability threshold of the GeoJSON polygons.
    chunk_tiles
        Chunk edge in tiles (a chunk of ``chunk_tiles**2`` tiles shares its level reads).
    loader_threads
        Threads reading chunks; ``prefetch`` chunks are read ahead of the model.
    prefetch
        Chunks in flight ahead of the model.
    loader_nice
        Scheduling niceness added to the loader threads (Linux): on a CPU device the model's
        threads keep the cores and reading fills the gaps (0, the default, disables it).
    """

    device: str = "cpu"
    precision: str = "fp32"
    batch_size: int = 16
    overlap: float = 0.25
    tissue_mask: bool = True
    tissue_mpp: float = DEFAULT_TISSUE_MPP
    mpp: float | None = None
    out_mpp: float | None = None
    ramp: str = Ramp.LINEAR.value
    float16: bool = False
    geojson: bool = False
    threshold: float = 0.5
    chunk_tiles: int = 8
    loader_threads: int = 2
    prefetch: int = 2
    loader_nice: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < 1:
            raise ConfigError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.batch_size < 1 or self.chunk_tiles < 1 or self.loader_threads < 1 or self.prefetch < 1:
            raise ConfigError("batch_size, chunk_tiles, loader_threads and prefetch must be >= 1")
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.ramp not in {r.value for r in Ramp}:
            raise ConfigError(f"ramp must be one of {[r.value for r in Ramp]}, got {self.ramp!r}")
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ConfigError(f"precision must be fp32, bf16 or auto, got {self.precision!r}")

    def identity(self) -> dict[str, Any]:
        """The settings that change the outputs (resumability compares these; device/threads don't)."""
        d = asdict(self)
        for k in ("device", "batch_size", "loader_threads", "prefetch", "loader_nice"):
            d.pop(k)
        return d


@dataclass
class Tiling:
    """The tile grid of one slide in map pixels (see the module docstring)."""

    map_shape: tuple[int, int]  # (height, width) of the map
    map_mpp: float  # microns per map pixel (the model's finest mpp)
    tile: int  # S
    stride: int
    origins: np.ndarray  # int64 (n, 2) top-left (x, y) of each tile, map pixels
    chunk_ids: np.ndarray  # int64 (n,) chunk of each tile
    downsample: float  # level-0 pixels per map pixel

    @property
    def n_tiles(self) -> int:
        return len(self.origins)

    def centers_l0(self, index: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Level-0 ``(x, y)`` centres of tiles ``index`` (float64 ``(n, 2)``)."""
        return (self.origins[index].astype(np.float64) + self.tile / 2.0) * self.downsample

    def boxes_l0(self, index: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Level-0 boxes ``(x0, y0, x1, y1)`` of tiles ``index``."""
        o = self.origins[index].astype(np.float64)
        return np.concatenate([o, o + self.tile], axis=1) * self.downsample

    def chunks(self) -> list[np.ndarray]:
        """Tile indices of every non-empty chunk, in row-major chunk order."""
        order = np.argsort(self.chunk_ids, kind="stable")
        ids = self.chunk_ids[order]
        cuts = np.flatnonzero(np.diff(ids)) + 1
        return [part for part in np.split(order, cuts) if len(part)]


def grid_positions(length: int, tile: int, stride: int) -> np.ndarray:
    """Tile starts ``0, stride, 2*stride, ...`` covering ``[0, length)`` (the last tile may overhang)."""
    n = 1 + max(0, math.ceil((length - tile) / stride))
    return np.arange(n, dtype=np.int64) * stride


def make_tiling(
    slide_dimensions: tuple[int, int],
    slide_mpp: float,
    map_mpp: float,
    tile: int,
    overlap: float,
    chunk_tiles: int,
    keep: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Tiling:
    """Build the tile grid of a slide.

    Parameters
    ----------
    slide_dimensions
        ``(width, height)`` of level 0.
    slide_mpp, map_mpp
        Microns per pixel of level 0 and of the map.
    tile, overlap, chunk_tiles
        Tile edge (map pixels), overlap fraction, chunk edge (tiles).
    keep
        Optional filter: level-0 boxes ``(n, 4)`` -> bool ``(n,)`` (e.g. "touches tissue").
    """
    downsample = map_mpp / slide_mpp
    w0, h0 = slide_dimensions
    map_w, map_h = max(1, round(w0 / downsample)), max(1, round(h0 / downsample))
    stride = max(1, round(tile * (1.0 - overlap)))
    xs, ys = grid_positions(map_w, tile, stride), grid_positions(map_h, tile, stride)
    mx, my = np.meshgrid(np.arange(len(xs)), np.arange(len(ys)))
    gx, gy = mx.ravel(), my.ravel()
    origins = np.stack([xs[gx], ys[gy]], axis=1)
    n_chunk_cols = math.ceil(len(xs) / chunk_tiles)
    chunk_ids = (gy // chunk_tiles) * n_chunk_cols + gx // chunk_tiles
    tiling = Tiling((map_h, map_w), map_mpp, tile, stride, origins, chunk_ids.astype(np.int64), downsample)
    if keep is not None and len(origins):
        mask = np.asarray(keep(tiling.boxes_l0()), dtype=bool)
        tiling.origins, tiling.chunk_ids = origins[mask], tiling.chunk_ids[mask]
    return tiling


def check_resolution(slide_path: Path, slide_mpp: float, model_mpp: float) -> None:
    """Refuse slides whose finest level is coarser than the model's finest mpp (beyond 2%)."""
    if slide_mpp > model_mpp * (1.0 + MPP_TOLERANCE):
        raise SlideError(
            f"{slide_path}: slide resolution {slide_mpp:.4g} µm/px is coarser than the model's finest input "
            f"{model_mpp:.4g} µm/px (tolerance {MPP_TOLERANCE:.0%}); the model cannot be applied "
            "(check the slide's mpp or pass --mpp if its metadata is wrong)"
        )


def prepare_model(checkpoint: Checkpoint, device: str, precision: str = "fp32") -> ModelFn:
    """Build the checkpoint's model on ``device`` and wrap it for inference.

    Uses :func:`mrseg.inference.predictor.prepare_for_inference` (eval mode, channels-last layout,
    inference mode, optional bf16 autocast). Returns a callable ``float32 (N, J, 3, H, W) -> logits``.
    """
    from mrseg.inference.predictor import prepare_for_inference

    try:
        dev = torch.device(device)
    except RuntimeError as error:
        raise ConfigError(f"unknown device {device!r}: {error}") from error
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return prepare_for_inference(checkpoint.build_model(), precision=precision, device=dev)  # type: ignore[arg-type]


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


ProgressCallback = Callable[[int, int], None]


def _reader(
    slide_path: Path, spec: Any, tiling: Tiling, mpp: float | None, backend: str
) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[], None], Callable[[], int | None]]:
    """A thread-safe chunk reader: one Slide handle per loader thread."""
    from mrseg.wsi.concentric import read_concentric_grid
    from mrseg.wsi.slide import Slide

    local = threading.local()
    handles: list[Any] = []
    lock = threading.Lock()

    def read(index: np.ndarray) -> np.ndarray:
        slide = getattr(local, "slide", None)
        if slide is None:
            slide = Slide.open(slide_path, backend=backend, mpp=mpp)
            local.slide = slide
            with lock:
                handles.append(slide)
        centers = tiling.centers_l0(index)
        try:
            # One grid cell per chunk: the chunk's tiles share each level's read.
            return read_concentric_grid(slide, centers, spec, chunk_px=1 << 30)
        except MrsegError as error:
            box = tiling.boxes_l0(index)
            raise SlideError(
                f"{slide_path}: region unreadable near level-0 box "
                f"({box[:, 0].min():.0f}, {box[:, 1].min():.0f}, {box[:, 2].max():.0f}, {box[:, 3].max():.0f}): "
                f"{error}"
            ) from error
        except Exception as error:  # backend errors (OpenSlideError, tifffile, codec errors...)
            box = tiling.boxes_l0(index)
            raise SlideError(
                f"{slide_path}: region unreadable near level-0 box "
                f"({box[:, 0].min():.0f}, {box[:, 1].min():.0f}, {box[:, 2].max():.0f}, {box[:, 3].max():.0f}): "
                f"{type(error).__name__}: {error}"
            ) from error

    def close() -> None:
        for h in handles:
            h.close()

    def pixels_read() -> int | None:
        counts = [getattr(h, "pixels_read", None) for h in handles]
        if not counts or any(c is None for c in counts):
            return None
        return sum(int(c) for c in counts if c is not None)

    return read, close, pixels_read


def _lower_priority(nice: int) -> None:
    """Thread initializer: lower this thread's scheduling priority by ``nice`` (Linux only; best effort)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError:  # not permitted or not supported: keep the default priority
        log.debug("could not lower the priority of the loader thread")


def _prefetch(
    pool: ThreadPoolExecutor, read: Callable[[np.ndarray], np.ndarray], chunks: list[np.ndarray], depth: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(tile indices, patches)`` per chunk in order, keeping ``depth`` reads in flight."""
    pending: deque[tuple[np.ndarray, Future[np.ndarray]]] = deque()
    it = iter(chunks)
    try:
        for index in it:
            pending.append((index, pool.submit(read, index)))
            if len(pending) >= depth:
                break
        while pending:
            index, fut = pending.popleft()
            patches = fut.result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(read, nxt)))
            yield index, patches
    finally:
        for _, fut in pending:
            fut.cancel()


def predict_slide(
    model: ModelFn,
    checkpoint: Checkpoint,
    slide_path: str | Path,
    workdir: str | Path,
    settings: PredictSettings = PredictSettings(),
    *,
    backend: str = "auto",
    progress: ProgressCallback | None = None,
) -> SlidePrediction:
    """Predict one slide into an on-disk probability map under ``workdir``.

    Parameters
    ----------
    model
        The checkpoint's model prepared for ``settings.device`` (:func:`prepare_model`).
    checkpoint
        Supplies the input specification (mpps, patch size, normalisation).
    slide_path
        The whole-slide image.
    workdir
        Scratch folder of the merger (the map's zarr arrays live there until written out).
    settings
        See :class:`PredictSettings`.
    progress
        Called with ``(tiles done, tiles total)`` after every batch.

    Raises
    ------
    MissingMppError
        The slide has no mpp and ``settings.mpp`` is not given.
    SlideError
        Slide coarser than the model, or a region cannot be read (the message names the location).
    """
    from mrseg.wsi.slide import Slide

    slide_path = Path(slide_path)
    spec_in = checkpoint.input_spec
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with Slide.open(slide_path, backend=backend, mpp=settings.mpp) as slide:
        slide_mpp = float(slide.mpp)
        dims = (int(slide.dimensions[0]), int(slide.dimensions[1]))
        check_resolution(slide_path, slide_mpp, spec_in.mpps[0])
        tissue_fraction: float | None = None
        keep = None
        if settings.tissue_mask:
            from mrseg.wsi.tissue import tissue_mask

            tm = tissue_mask(slide, TissueSettings(mpp=settings.tissue_mpp))
            tissue_fraction = float(tm.fraction)

            def keep(boxes: np.ndarray) -> np.ndarray:
                return np.array([tm.fraction_in_box(tuple(b)) > 0 for b in boxes], dtype=bool)

        timings["open_and_tissue_s"] = time.perf_counter() - t0
    tiling = make_tiling(
        dims, slide_mpp, spec_in.mpps[0], spec_in.size_px, settings.overlap, settings.chunk_tiles, keep
    )
    out_mpp = settings.out_mpp or spec_in.mpps[0]
    if out_mpp < spec_in.mpps[0] * (1 - 1e-6):
        raise ConfigError(f"out_mpp {out_mpp} is finer than the model's finest mpp {spec_in.mpps[0]}")
    scale = spec_in.mpps[0] / out_mpp  # map pixels -> output pixels
    w0, h0 = dims
    out_shape = (max(1, round(h0 * slide_mpp / out_mpp)), max(1, round(w0 * slide_mpp / out_mpp)))
    channels = checkpoint.labels.num_classes - 1
    merger = OnDiskMerger(
        Path(workdir) / "merger",
        out_shape,
        channels,
        mpp=out_mpp,
        ramp=settings.ramp,
        out_dtype="float16" if settings.float16 else "uint8",
    )
    if tiling.n_tiles == 0:
        log.warning("%s: no tissue found; writing an empty probability map", slide_path)
        if progress is not None:
            progress(0, 0)
    device = torch.device(settings.device)
    out_tile = max(1, round(spec_in.size_px * scale))
    read, close, pixels_read = _reader(slide_path, spec_in, tiling, settings.mpp, backend)
    t_model = 0.0
    done = 0
    t1 = time.perf_counter()
    try:
        with ThreadPoolExecutor(
            settings.loader_threads,
            thread_name_prefix="mrseg-read",
            initializer=_lower_priority,
            initargs=(settings.loader_nice,),
        ) as pool:
            for index, patches in _prefetch(pool, read, tiling.chunks(), settings.prefetch):
                for start in range(0, len(index), settings.batch_size):
                    sel = index[start : start + settings.batch_size]
                    x = to_tensor(patches[start : start + settings.batch_size], spec_in)
                    tm0 = time.perf_counter()
                    with torch.inference_mode():
                        prob = foreground_probabilities(model(x.to(device, non_blocking=True)), checkpoint.labels)
                        if out_tile != prob.shape[-1]:
                            prob = torch.nn.functional.interpolate(prob, size=(out_tile, out_tile), mode="area")
                        prob_np = prob.float().cpu().numpy()
                    t_model += time.perf_counter() - tm0
                    origins = np.rint(tiling.origins[sel] * scale).astype(np.int64)
                    merger.aggregate(prob_np, np.concatenate([origins, origins + out_tile], axis=1))
                    done += len(sel)
                    if progress is not None:
                        progress(done, tiling.n_tiles)
        pmap = merger.finalize()
        read_count = pixels_read()
    finally:
        close()
    timings["tiles_s"] = time.perf_counter() - t1
    timings["model_s"] = t_model
    return SlidePrediction(pmap, tiling, dims, slide_mpp, timings, tissue_fraction, read_count)
