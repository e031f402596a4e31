"""The record ``<stem>.json`` that ``mrseg predict`` writes beside each slide's outputs, and its one reader.

Written last (it marks a slide as done), read by ``predict`` itself (to skip up-to-date slides),
by evaluation, the demo's mimic scores and the viewer. The JSON layout::

    slide       {path, dimensions [W0, H0] level-0 px, mpp (level 0, um/px), tissue_fraction}
    checkpoint  {path, sha256, model, model_kwargs, input (InputSpec), labels (LabelSpec)}
    settings    the prediction settings that shape the outputs, resolved (``PredictSettings.identity()``:
                tissue settings actually used, writers, overlap, ...)
    run         {device (resolved), batch_size, backend (used)}
    map         {mpp (um per map pixel), shape [H, W], dtype (uint8|float16), scale (255|1), channels, content}
    outputs     {key: file name in the same folder}: see below
    writers     {writer name: what it reported}, e.g. {"geojson": {"polygons": 3}} (non-empty reports only)
    files       {file name: {bytes, sha256}} of every output but the record (records before mrseg 0.x lack it):
                ``predict`` skips a slide only when its files still match (:func:`files_intact`)

Output keys: ``map`` (foreground probability: the one class of a binary task, ``1 - P(background)``
otherwise), ``record`` (this file), ``overlay`` (PNG), optional ``geojson`` (features classified by
the label spec's class names and colours); multi-class tasks add ``class<k>`` (probability of class
``k = 1 .. C-1``) and ``labels`` (label map: the most probable class per pixel incl. background,
``uint8``); a writer registered by the user adds its own keys.
    tiles {total, size, stride}, pixels_read, polygons (GeoJSON features), timings, mrseg_version

Map pixel ``(u, v)`` covers level-0 ``[u*d, (u+1)*d) x [v*d, (v+1)*d)`` with ``d = map.mpp / slide.mpp``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mrseg.core.encoding import ProbabilityEncoding
from mrseg.core.errors import DataError
from mrseg.core.label_spec import LabelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictionRecord:
    """What a consumer needs of one slide's prediction record.

    Attributes
    ----------
    path
        The ``<stem>.json`` file; other outputs are named relative to its folder.
    stem
        Slide name (file stem).
    slide_path
        The slide that was predicted.
    slide_dimensions
        Level-0 ``(width, height)`` in pixels.
    slide_mpp
        Level-0 microns per pixel used for the prediction.
    map_mpp
        Microns per pixel of the probability map.
    encoding
        How the map stores probabilities.
    outputs
        ``{key: file name}`` of the slide's outputs (``map``, ``overlay``, ``record``...).
    labels
        The checkpoint's label spec (binary default for records written before label specs).
    raw
        The whole JSON document.
    """

    path: Path
    stem: str
    slide_path: Path
    slide_dimensions: tuple[int, int]
    slide_mpp: float
    map_mpp: float
    encoding: ProbabilityEncoding
    outputs: dict[str, str]
    labels: LabelSpec = field(default_factory=LabelSpec)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def map_path(self) -> Path:
        """The foreground probability map TIFF."""
        return self.folder / self.outputs["map"]

    def output(self, key: str) -> Path:
        """Path of output ``key`` (:class:`DataError` when the record has none)."""
        if key not in self.outputs:
            raise DataError(f"{self.path}: no output {key!r} recorded (has {sorted(self.outputs)})")
        return self.folder / self.outputs[key]

    def class_map_path(self, k: int) -> Path:
        """Probability map of class ``k`` (``1 .. C-1``); for binary tasks class 1 is the ``map``."""
        if not 1 <= k < self.labels.num_classes:
            raise DataError(f"{self.path}: no class {k} (classes {list(self.labels.classes)})")
        if self.labels.is_binary:
            return self.map_path
        return self.output(f"class{k}")

    @property
    def label_map_path(self) -> Path | None:
        """The label-map TIFF of a multi-class prediction (None when not written)."""
        return self.folder / self.outputs["labels"] if "labels" in self.outputs else None

    @property
    def map_pixel_l0(self) -> float:
        """Level-0 pixels per map pixel (``map_mpp / slide_mpp``)."""
        return self.map_mpp / self.slide_mpp

    @classmethod
    def from_dict(cls, path: Path, data: dict[str, Any]) -> PredictionRecord:
        """Parse a record document (raises ``KeyError``/``TypeError``/``ValueError`` when malformed)."""
        slide, pmap = data["slide"], data["map"]
        labels = data.get("checkpoint", {}).get("labels")
        return cls(
            path=path,
            stem=path.stem,
            slide_path=Path(slide["path"]),
            slide_dimensions=(int(slide["dimensions"][0]), int(slide["dimensions"][1])),
            slide_mpp=float(slide["mpp"]),
            map_mpp=float(pmap["mpp"]),
            encoding=ProbabilityEncoding(pmap.get("dtype", "uint8")),
            outputs={str(k): str(v) for k, v in data["outputs"].items()},
            labels=LabelSpec.from_dict(labels) if isinstance(labels, dict) else LabelSpec(),
            raw=data,
        )


def file_sha256(path: str | os.PathLike[str], block: int = 1 << 20) -> str:
    """Hex SHA-256 of a file (identifies checkpoints and outputs in records)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``{"bytes": size, "sha256": hex}`` of a file: a record's ``files`` entry."""
    return {"bytes": os.path.getsize(path), "sha256": file_sha256(path)}


def files_intact(folder: str | os.PathLike[str], record: dict[str, Any]) -> bool:
    """True when every output of ``record`` (a record's JSON) exists in ``folder`` with its recorded size and hash.

    Records without ``files`` (older ones) are checked for presence only.
    """
    folder = Path(folder)
    outputs = record.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        return False
    if not all((folder / str(name)).is_file() for name in outputs.values()):
        return False
    files = record.get("files")
    if not isinstance(files, dict):
        return True
    for name, digest in files.items():
        path = folder / str(name)
        if not isinstance(digest, dict) or not path.is_file() or os.path.getsize(path) != digest.get("bytes"):
            return False
        if file_sha256(path) != digest.get("sha256"):
            return False
    return True


def load_record_json(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The JSON document of a record, or None when absent, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_prediction_record(path: str | os.PathLike[str]) -> PredictionRecord:
    """Read ``<stem>.json`` written by ``mrseg predict``.

    Raises
    ------
    DataError
        Missing, unreadable or not a prediction record (naming the file).
    """
    path = Path(path)
    data = load_record_json(path)
    if data is None:
        raise DataError(f"{path}: not a readable prediction record (JSON object)")
    try:
        return PredictionRecord.from_dict(path, data)
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(f"{path}: not a prediction record ({type(error).__name__}: {error})") from None


def find_prediction_records(folder: str | os.PathLike[str]) -> dict[str, PredictionRecord]:
    """Finished predictions in a ``mrseg predict`` output folder: ``{stem: record}`` whose map file exists.

    JSON files that are not prediction records are ignored (logged at debug level).

    Raises
    ------
    DataError
        The folder does not exist or holds no finished prediction.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: prediction folder not found")
    out: dict[str, PredictionRecord] = {}
    for path in sorted(folder.glob("*.json")):
        try:
            record = read_prediction_record(path)
        except DataError as error:
            log.debug("%s", error)
            continue
        if record.map_path.is_file():
            out[record.stem] = record
    if not out:
        raise DataError(f"{folder}: no finished predictions (<stem>.json + <stem>.tif from mrseg predict)")
    return out


__all__ = [
    "PredictionRecord",
    "file_digest",
    "file_sha256",
    "files_intact",
    "find_prediction_records",
    "load_record_json",
    "read_prediction_record",
]
