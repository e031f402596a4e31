"""What the built-in backends share: a handle with OpenSlide's API (openslide-python and tiffslide both have it).

The pyramid, properties and associated images are read once from the handle; the mpp comes from
the ``<metadata_prefix>.mpp-x`` / ``.mpp-y`` properties, else from the TIFF resolution tags
(:func:`mrseg.wsi.tiff.resolution_mpp`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mrseg.wsi.backends.base import SlideBackend, properties_mpp, to_rgb
from mrseg.wsi.geometry import Size
from mrseg.wsi.tiff import resolution_mpp


class OpenSlideShapedBackend(SlideBackend):
    """A backend over an OpenSlide-shaped ``handle`` (``level_dimensions``, ``properties``, ``read_region``...).

    Attributes
    ----------
    metadata_prefix
        Prefix of the handle's own property names (``openslide.mpp-x``, ``tiffslide.vendor``).
    default_vendor
        Vendor reported when the handle's ``<prefix>.vendor`` property is empty.
    """

    metadata_prefix: ClassVar[str] = ""
    default_vendor: ClassVar[str] = "unknown"

    def __init__(self, path: Path, handle: Any) -> None:
        super().__init__(path)
        self._handle = handle
        self._dimensions = [(int(w), int(h)) for w, h in handle.level_dimensions]
        self._downsamples = [float(d) for d in handle.level_downsamples]
        self._properties = dict(handle.properties)
        self._associated = sorted(handle.associated_images)

    @property
    def level_dimensions(self) -> Sequence[Size]:
        return self._dimensions

    @property
    def level_downsamples(self) -> Sequence[float]:
        return self._downsamples

    @property
    def properties(self) -> Mapping[str, Any]:
        return self._properties

    @property
    def vendor(self) -> str:
        return self._properties.get(f"{self.metadata_prefix}.vendor") or self.default_vendor

    @property
    def associated_names(self) -> Sequence[str]:
        return self._associated

    @property
    def mpp(self) -> tuple[float, float] | None:
        return properties_mpp(self._properties, self.metadata_prefix) or resolution_mpp(self.path)

    def associated(self, name: str) -> np.ndarray:
        return to_rgb(np.asarray(self._handle.associated_images[name]))

    def close(self) -> None:
        self._handle.close()
