"""Per-slide outputs of ``mrseg predict``: one :class:`~mrseg.inference.writers.base.Writer` per kind of file.

Built-in writers (``PredictSettings.writers`` chooses them by name):

==========  ===================================================================  ======================
name        files (record ``outputs`` keys)                                      module
==========  ===================================================================  ======================
``tiff``    ``<stem>.tif`` (``map``), ``<stem>_class<k>.tif`` (``class<k>``)      :mod:`.tiff`
``labels``  ``<stem>_labels.tif`` (``labels``), multi-class tasks only           :mod:`.tiff`
``overlay`` ``<stem>_overlay.png`` (``overlay``)                                  :mod:`.overlay`
``geojson`` ``<stem>.geojson`` (``geojson``)                                      :mod:`.geojson`
``asap``    ``<stem>_regions.xml`` (``asap``): predicted regions as ASAP XML      :mod:`.asap`
``level0``  ``<stem>_level0.tif`` (``map_level0``), ``<stem>_labels_level0.tif``  :mod:`.level0`
            (``labels_level0``): maps on the slide's level-0 grid (ASAP, QuPath)
``ome``     ``<stem>.ome.tif`` (``ome``), ``<stem>_labels.ome.tif`` (``ome_labels``)  :mod:`.ome`
==========  ===================================================================  ======================

The JSON record ``<stem>.json`` (``record``, :mod:`.record`) is always written, last. A new
format is one module with a registered :class:`~mrseg.inference.writers.base.Writer` subclass
(see docs/architecture.md, "Worked example: a new writer").
"""

from mrseg.inference.writers import asap, geojson, level0, ome, overlay, tiff
from mrseg.inference.writers.base import WRITERS, WriteJob, Writer, create_writers, register_writer
from mrseg.inference.writers.record import RecordWriter

__all__ = [
    "WRITERS",
    "RecordWriter",
    "WriteJob",
    "Writer",
    "asap",
    "create_writers",
    "geojson",
    "level0",
    "ome",
    "overlay",
    "register_writer",
    "tiff",
]
