"""Pyramidal OME-TIFF outputs (writer ``ome``), for Bio-Formats-based tools (QuPath, napari's OME readers, OMERO).

- ``<stem>.ome.tif`` (key ``ome``): the probability maps as one OME image, one channel per
  foreground class of the label spec (binary tasks: the one class), ``uint8`` = probability x 255
  as the prediction's encoding, or ``float32`` for ``float16`` maps (OME has no 16-bit float pixel
  type; the values are widened exactly); reduced levels are 2x2 means.
- ``<stem>_labels.ome.tif`` (key ``ome_labels``, multi-class only): the ``uint8`` label map (0 =
  background, ``k`` = class ``k``); reduced levels are nearest (the top-left pixel of each 2x2 block).

Each file holds one OME ``Image`` whose ``Pixels`` carry ``PhysicalSizeX/Y`` in µm (the map's mpp)
and its channels' names; the full-resolution planes are the top-level IFDs, the reduced levels
(each half the size, as :func:`mrseg.wsi.tiff.pyramid_shapes`) their SubIFDs, as Bio-Formats 6+
reads pyramids. Tiles are 256 px, zlib-compressed; the TIFF resolution tags repeat the mpp.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from mrseg.core.atomic import atomic_path
from mrseg.core.label_spec import LabelSpec
from mrseg.inference.writers.base import WriteJob, Writer, register_writer
from mrseg.wsi.pyramid_tiles import reduce2
from mrseg.wsi.tiff import Downsample, PyramidPlan, plan_pyramid

#: Tile edge of the OME-TIFF levels (pixels).
OME_TILE = 256

#: Bytes of one strip when a reduced level is computed (bounded memory).
_STRIP_BYTES = 64 << 20


def pyramid_levels(level0: Any, plan: PyramidPlan, downsample: Downsample, scratch: Path) -> Iterator[Any]:
    """Yield level 0, then each reduced level, computed from the previous one just before it is needed."""
    current: Any = level0
    for index in range(len(plan.shapes)):
        if index > 0:
            current = _halve(current, downsample, scratch / f"level{index}.npy")
        yield current


def _halve(level: Any, mode: Downsample, scratch: Path) -> np.ndarray:
    """The next pyramid level, computed strip by strip into a memory map (bounded memory)."""
    h, w = level.shape[:2]
    out_shape = ((h + 1) // 2, (w + 1) // 2, *level.shape[2:])
    out = np.lib.format.open_memmap(scratch, mode="w+", dtype=level.dtype, shape=out_shape)
    row_bytes = max(1, w * int(np.prod(level.shape[2:], dtype=np.int64)) * level.dtype.itemsize)
    step = max(2, (_STRIP_BYTES // row_bytes) // 2 * 2)
    for y in range(0, h, step):
        out[y // 2 : (y + step + 1) // 2] = reduce2(np.asarray(level[y : y + step]), mode)
    out.flush()
    return out


def _plane_tiles(level: Any, tile: int) -> Iterator[np.ndarray]:
    """``tile x tile`` tiles of one ``(h, w)`` plane in row-major order, zero-padded at the edges."""
    h, w = level.shape[:2]
    for y in range(0, h, tile):
        strip = np.asarray(level[y : y + tile])
        for x in range(0, w, tile):
            block = np.zeros((tile, tile), dtype=strip.dtype)
            part = strip[:, x : x + tile]
            block[: part.shape[0], : part.shape[1]] = part
            yield block


class _Float32:
    """A ``float16`` array-like read as ``float32`` strip by strip (OME pixel types have no float16)."""

    def __init__(self, array: Any) -> None:
        self.array = array
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.array[key], dtype=np.float32)


def ome_planes(planes: Sequence[Any]) -> list[Any]:
    """``planes`` in an OME pixel type: ``float16`` ones widened to ``float32``, the others as they are."""
    return [_Float32(p) if np.dtype(p.dtype) == np.float16 else p for p in planes]


def ome_metadata(name: str, mpp: float, channels: Sequence[str]) -> dict[str, Any]:
    """The OME metadata of one image (tifffile's ``metadata=``): axes, physical pixel size in µm, channel names."""
    return {
        "axes": "CYX",
        "Name": name,
        "PhysicalSizeX": float(mpp),
        "PhysicalSizeXUnit": "µm",
        "PhysicalSizeY": float(mpp),
        "PhysicalSizeYUnit": "µm",
        "Channel": {"Name": list(channels)},
    }


def write_ome_tiff(
    path: str | os.PathLike[str],
    planes: Sequence[Any],
    mpp: float,
    *,
    channels: Sequence[str],
    name: str,
    downsample: Downsample = "mean",
) -> Path:
    """Write ``planes`` (``(H, W)`` array-likes of one dtype, one per channel) as a pyramidal OME-TIFF, atomically.

    Parameters
    ----------
    path
        Destination (``.ome.tif``).
    planes
        One ``(H, W)`` array-like per channel (numpy, memory map or anything with row slicing);
        ``float16`` is written as ``float32``.
    mpp
        Microns per pixel of the planes (``PhysicalSizeX/Y``).
    channels
        Channel names, one per plane.
    name
        The OME image name.
    downsample
        ``"mean"`` for probabilities, ``"nearest"`` for labels.
    """
    if len(planes) != len(channels) or not planes:
        raise ValueError(f"{len(planes)} planes for {len(channels)} channel names")
    planes = ome_planes(planes)
    first = planes[0]
    plan = plan_pyramid(
        tuple(int(s) for s in first.shape), np.dtype(first.dtype), mpp, tile=OME_TILE, compression="zlib"
    )
    path = Path(path)
    data_bytes = len(planes) * int(np.prod(first.shape)) * plan.dtype.itemsize * 4 // 3  # with the pyramid
    with tempfile.TemporaryDirectory(prefix="mrseg-ome-") as scratch, atomic_path(path) as tmp:
        folders = [Path(scratch) / f"c{c}" for c in range(len(planes))]
        for folder in folders:
            folder.mkdir()
        # One pyramid per channel, advanced in lockstep: level k of every channel, then level k + 1.
        pyramids = [pyramid_levels(plane, plan, downsample, f) for plane, f in zip(planes, folders, strict=True)]
        with tifffile.TiffWriter(tmp, bigtiff=data_bytes > 2**31 - 2**26, ome=True) as tw:
            for index, levels in enumerate(zip(*pyramids, strict=True)):
                _write_level(tw, plan, index, levels, ome_metadata(name, mpp, channels) if index == 0 else None)
    return path


def _write_level(
    tw: tifffile.TiffWriter, plan: PyramidPlan, index: int, levels: Sequence[Any], metadata: dict[str, Any] | None
) -> None:
    """Level ``index`` of every channel: the top-level IFDs (with the SubIFDs to come) or one SubIFD each."""
    h, w = plan.shapes[index]
    resolution = plan.px_per_cm / 2**index
    tiles = (t for level in levels for t in _plane_tiles(level, plan.tile))
    options: dict[str, Any] = {"subifds": len(plan.shapes) - 1, "metadata": metadata} if index == 0 else {
        "subfiletype": 1, "metadata": None,
    }  # fmt: skip
    tw.write(
        tiles,
        shape=(len(levels), h, w),
        dtype=plan.dtype,
        tile=(plan.tile, plan.tile),
        compression="zlib",
        photometric="minisblack",
        resolution=(resolution, resolution),
        resolutionunit="CENTIMETER",
        **options,
    )


@register_writer
class OmeTiffWriter(Writer):
    """``<stem>.ome.tif`` (probabilities) and, for multi-class tasks, ``<stem>_labels.ome.tif``."""

    name = "ome"
    concurrent = True

    def outputs(self, stem: str, labels: LabelSpec) -> dict[str, str]:
        names = {"ome": f"{stem}.ome.tif"}
        if not labels.is_binary:
            names["ome_labels"] = f"{stem}_labels.ome.tif"
        return names

    def write(self, job: WriteJob) -> dict[str, Any]:
        pmap = job.prediction.map
        stem = job.names["ome"].removesuffix(".ome.tif")
        names = list(job.labels.foreground)  # channel k - 1 is the probability of class k
        write_ome_tiff(job.path("ome"), list(pmap.channels), pmap.mpp, channels=names, name=f"{stem} probabilities")
        if not job.labels.is_binary:
            write_ome_tiff(
                job.path("ome_labels"),
                [pmap.labels()],
                pmap.mpp,
                channels=["label"],
                name=f"{stem} labels",
                downsample="nearest",
            )
        return {"channels": names}


__all__ = ["OME_TILE", "OmeTiffWriter", "ome_metadata", "ome_planes", "write_ome_tiff"]
