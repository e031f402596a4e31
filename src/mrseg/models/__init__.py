"""The networks: U-Net and the Multi-Resolution Networks (MRN) of Gu et al. (2018).

Build them with :func:`create_model`; every model maps ``(N, J, 3, H, W)`` float patches
(finest mpp first) to logits ``(N, C, H, W)`` of the finest patch. The parts: :mod:`.base` (the
model that owns ``forward``), :mod:`.encoder`, :mod:`.fusion` and :mod:`.fusers`, :mod:`.decoder`,
:mod:`.blocks`; :mod:`.registry` is built from the classes in :mod:`.unet` and :mod:`.mrn`
(importing this package registers them).
"""

from __future__ import annotations

# Importing an architecture registers it; the U-Net baseline first (the order of model_names()).
# isort: off
from mrseg.models.unet import UNet
from mrseg.models.mrn import MRN

# isort: on
from mrseg.models.base import SegmentationModel
from mrseg.models.encoder import Encoder, UNetEncoder
from mrseg.models.fusers import DEFAULT_FUSER, Fuser, fuser_names, register_fuser
from mrseg.models.registry import MODELS, create_model, model_names, model_options, register_model
from mrseg.models.sizes import gammas_from_mpps, required_multiple, valid_sizes

__all__ = [
    "DEFAULT_FUSER",
    "MODELS",
    "MRN",
    "Encoder",
    "Fuser",
    "SegmentationModel",
    "UNet",
    "UNetEncoder",
    "create_model",
    "fuser_names",
    "gammas_from_mpps",
    "model_names",
    "model_options",
    "register_fuser",
    "register_model",
    "required_multiple",
    "valid_sizes",
]
