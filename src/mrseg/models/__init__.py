"""The networks: U-Net and the Multi-Resolution Networks (MRN) of Gu et al. (2018).

Build them with :func:`create_model`; every model maps ``(N, J, 3, H, W)`` float patches
(finest mpp first) to logits ``(N, C, H, W)`` of the finest patch.
"""

from __future__ import annotations

from mrseg.models.blocks import SegmentationModel
from mrseg.models.mrn import MRN
from mrseg.models.registry import MODELS, create_model, model_names
from mrseg.models.sizes import gammas_from_mpps, required_multiple, valid_sizes
from mrseg.models.unet import UNet

__all__ = [
    "MODELS",
    "MRN",
    "SegmentationModel",
    "UNet",
    "create_model",
    "gammas_from_mpps",
    "model_names",
    "required_multiple",
    "valid_sizes",
]
