"""The JSON record ``<stem>.json`` (key ``record``): always written, last; it marks the slide as done.

Its layout is documented, and read, in :mod:`mrseg.core.prediction_record`. The runner passes the
facts the other writers reported (``job.facts``): they are recorded under ``writers`` (non-empty
ones), and GeoJSON's ``polygons`` also under the top-level key ``polygons``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mrseg import __version__
from mrseg.core.label_spec import LabelSpec
from mrseg.core.prediction_record import file_digest
from mrseg.inference.writers.base import WriteJob, Writer

#: What the foreground map ``<stem>.tif`` holds (the record's ``map.content``).
MAP_CONTENT = "probability of the foreground (sigmoid of 1 logit, or 1 - softmax background)"


def record_of(job: WriteJob) -> dict[str, Any]:
    """The record document of ``job`` (see :mod:`mrseg.core.prediction_record`)."""
    pred, pmap = job.prediction, job.prediction.map
    return {
        "mrseg_version": __version__,
        "slide": {
            "path": str(Path(job.slide.path).resolve()),
            "dimensions": list(pred.slide_dimensions),
            "mpp": pred.slide_mpp,
            "tissue_fraction": pred.tissue_fraction,
        },
        "checkpoint": job.checkpoint,
        "settings": job.settings.identity(),
        "run": job.run,
        "map": {
            "mpp": pmap.mpp,
            "shape": list(pmap.shape),
            "dtype": str(pmap.dtype),
            "scale": pmap.encoding.scale,
            "content": MAP_CONTENT,
            "channels": len(pmap.channels),
        },
        "tiles": {"total": pred.tiling.n_tiles, "size": pred.tiling.tile_px, "stride": pred.tiling.stride_px},
        "pixels_read": pred.pixels_read,
        "polygons": job.facts.get("geojson", {}).get("polygons"),
        "writers": {name: facts for name, facts in job.facts.items() if facts},
        "timings": pred.timings,
        "outputs": job.names,
        "files": {name: file_digest(job.path(key)) for key, name in job.names.items() if key != "record"},
    }


class RecordWriter(Writer):
    """``<stem>.json``: run by the runner after every selected writer (not chosen in the settings)."""

    name = "record"

    def outputs(self, stem: str, labels: LabelSpec) -> dict[str, str]:
        return {"record": f"{stem}.json"}

    def write(self, job: WriteJob) -> dict[str, Any]:
        job.path("record").write_text(json.dumps(record_of(job), indent=2))
        return {}


__all__ = ["MAP_CONTENT", "RecordWriter", "record_of"]
