"""mrseg: multi-resolution semantic segmentation of whole-slide images.

Implements the Multi-Resolution Networks (MRN) of Gu et al. (2018) and the system around them:
slides at any mpp, concentric patches, annotations, tissue detection, training, whole-slide
inference and evaluation.
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
