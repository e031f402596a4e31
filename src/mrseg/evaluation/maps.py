"""Reading a prediction's maps onto an evaluation grid: probabilities (foreground, per class) and labels.

A :class:`MapReader` samples one map TIFF of a :class:`~mrseg.core.prediction_record.PredictionRecord`
(nearest, :func:`mrseg.wsi.geometry.sample_nearest`) onto any :class:`~mrseg.wsi.geometry.ReadGrid`
of the slide. :class:`SlideMaps` holds the readers of one slide's record: the foreground map
``<stem>.tif`` and, for multi-class records, the class maps ``<stem>_class<k>.tif`` and the label
map ``<stem>_labels.tif`` when it was written; it gives the stored values of every class and the
predicted label of every pixel.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import zarr

from mrseg.core.encoding import ProbabilityEncoding
from mrseg.core.errors import DataError
from mrseg.core.prediction_record import PredictionRecord
from mrseg.wsi import geometry as geo
from mrseg.wsi.geometry import ReadGrid


class MapReader:
    """Nearest-neighbour sampling of one map TIFF of a prediction onto an evaluation grid, strip by strip.

    Reads the coarsest pyramid level of the TIFF that is still at least as fine as ``target_mpp``
    (level 0 when ``target_mpp`` is None); level ``k`` of a map whose pixels cover ``d`` level-0
    pixels covers ``d * 2**k`` (the pyramid's integer factor, :func:`mrseg.wsi.geometry.snap_downsample`).

    Parameters
    ----------
    path
        The map TIFF (one of ``record``'s outputs, at the record's map mpp).
    record
        The prediction record (slide and map geometry, probability encoding).
    target_mpp
        Resolution of the grids it will be sampled on (µm/px); None reads full resolution (label maps,
        whose reduced levels need not be labels).

    Raises
    ------
    DataError
        The file is missing or not a readable TIFF (naming it).
    """

    def __init__(self, path: Path, record: PredictionRecord, target_mpp: float | None = None) -> None:
        self.path = path
        try:
            self._tif = tifffile.TiffFile(path)
        except (OSError, tifffile.TiffFileError, ValueError) as error:
            raise DataError(f"{path}: cannot read prediction map ({error})") from None
        try:
            self._check_shape(record)
            choice, factor = self._level(record, target_mpp)
            array: Any = zarr.open(self._tif.aszarr(series=0, level=choice), mode="r")
        except DataError:
            self._tif.close()
            raise
        except Exception as error:  # tifffile/zarr raise many kinds on malformed files
            self._tif.close()
            raise DataError(f"{path}: cannot read prediction map ({error})") from None
        self.array = array
        self.grid = ReadGrid.of_map(array.shape[:2], record.map_pixel_l0 * factor)
        self.encoding = (
            record.encoding if record.encoding.numpy_dtype == array.dtype else ProbabilityEncoding.of(array.dtype)
        )
        self.dtype = self.encoding.numpy_dtype

    def _check_shape(self, record: PredictionRecord) -> None:
        """Refuse a map whose size is not the one its record gives (it would be stretched onto the slide)."""
        expected = record.raw.get("map", {}).get("shape")
        actual = tuple(int(n) for n in self._tif.series[0].levels[0].shape[:2])
        if isinstance(expected, list) and len(expected) >= 2 and tuple(int(n) for n in expected[:2]) != actual:
            raise DataError(
                f"{self.path}: map of {actual[1]}x{actual[0]} px, but its record {record.path.name} says "
                f"{expected[1]}x{expected[0]} px; predict the slide again (mrseg predict --overwrite)"
            )

    def _level(self, record: PredictionRecord, target_mpp: float | None) -> tuple[int, float]:
        levels = self._tif.series[0].levels
        full = (int(levels[0].shape[1]), int(levels[0].shape[0]))
        choice, factor = 0, 1.0
        if target_mpp is None:
            return choice, factor
        for k, level in enumerate(levels):
            dims = (int(level.shape[1]), int(level.shape[0]))
            f = geo.snap_downsample(full, dims, full[0] / dims[0])
            if record.map_mpp * f <= target_mpp * (1 + 1e-6):
                choice, factor = k, f
        return choice, factor

    def sample(self, grid: ReadGrid) -> np.ndarray:
        """The map's stored values on ``grid`` (0 where the grid lies outside the map)."""
        try:
            values = geo.sample_nearest(self.array, self.grid, grid)
        except Exception as error:  # codecs raise their own kinds for truncated or corrupt tiles
            raise DataError(
                f"{self.path}: cannot read prediction map (truncated or corrupt? {type(error).__name__}: {error})"
            ) from None
        return values[..., 0] if values.ndim == 3 else values

    def to_probability(self, values: np.ndarray) -> np.ndarray:
        """Stored values -> float32 probabilities."""
        return self.encoding.decode(values)

    def complement(self, values: np.ndarray) -> np.ndarray:
        """Stored values of ``1 - p`` (exact for both encodings: ``255 - v`` or ``1 - v``)."""
        return np.subtract(self.encoding.scale, values, dtype=values.dtype)

    def close(self) -> None:
        self._tif.close()

    def __enter__(self) -> MapReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SlideMaps:
    """The readers of one slide's prediction: the foreground map and, for multi-class records, the classes.

    Parameters
    ----------
    record
        The slide's prediction record.
    target_mpp
        Resolution of the evaluation grid (µm/px).
    classes
        Also open the class maps (``class_map_path(k)``, ``k = 1 .. C-1``) and the label map (when
        recorded): multi-class evaluation.

    Raises
    ------
    DataError
        A recorded map is missing or unreadable, or a class map is not recorded.
    """

    def __init__(self, record: PredictionRecord, target_mpp: float, *, classes: bool = False) -> None:
        self.record = record
        with contextlib.ExitStack() as stack:
            self.foreground = stack.enter_context(MapReader(record.map_path, record, target_mpp))
            self.classes: list[MapReader] = []
            self.label_map: MapReader | None = None
            if classes:
                for k in range(1, record.labels.num_classes):
                    path = record.class_map_path(k)
                    self.classes.append(stack.enter_context(MapReader(path, record, target_mpp)))
                if record.label_map_path is not None:
                    self.label_map = stack.enter_context(MapReader(record.label_map_path, record, None))
            self._stack = stack.pop_all()

    @property
    def predicted_from(self) -> str:
        """Where predicted labels come from: ``"label map"`` or ``"argmax of class maps"``."""
        return "label map" if self.label_map is not None else "argmax of class maps"

    def class_values(self, grid: ReadGrid, foreground: np.ndarray) -> list[tuple[np.ndarray, ProbabilityEncoding]]:
        """Stored probability of every class ``0 .. C-1`` on ``grid``, with its encoding.

        Class 0 (background) is ``1 - foreground`` (the foreground map is ``1 - P(background)``);
        ``foreground`` holds the foreground map's stored values on ``grid``.
        """
        out = [(self.foreground.complement(foreground), self.foreground.encoding)]
        return out + [(reader.sample(grid), reader.encoding) for reader in self.classes]

    def predicted_labels(
        self, grid: ReadGrid, class_values: list[tuple[np.ndarray, ProbabilityEncoding]]
    ) -> np.ndarray:
        """``uint8`` predicted label on ``grid``: the label map's, else the argmax of the class probabilities.

        Ties go to the lowest label. Raises :class:`DataError` when the label map holds a label
        ``>= C``.
        """
        if self.label_map is None:
            probs = np.stack([encoding.decode(values) for values, encoding in class_values])
            return np.argmax(probs, axis=0).astype(np.uint8)
        labels = self.label_map.sample(grid)
        num_classes = self.record.labels.num_classes
        if labels.size and int(labels.max()) >= num_classes:
            raise DataError(
                f"{self.label_map.path}: label {int(labels.max())} is not a class of the record's label spec "
                f"(labels 0..{num_classes - 1})"
            )
        return labels.astype(np.uint8, copy=False)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> SlideMaps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["MapReader", "SlideMaps"]
