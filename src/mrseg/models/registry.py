"""``create_model(name, **kwargs)``: the one way to build a network, recording its hyper-parameters.

Every model returned carries ``model.hparams`` (``{"name": ..., **kwargs}`` as plain Python types)
such that ``create_model(**model.hparams)`` rebuilds the same architecture; checkpoints store it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from mrseg.core.errors import ModelConfigError
from mrseg.models.blocks import SegmentationModel
from mrseg.models.mrn import MRN
from mrseg.models.unet import UNet


def _unet(*, mpps: Sequence[float], num_classes: int, width: int, depth: int, in_channels: int) -> SegmentationModel:
    return UNet(mpps, num_classes=num_classes, width=width, depth=depth, in_channels=in_channels)


def _mrn(fusion: str) -> Callable[..., SegmentationModel]:
    def build(
        *, mpps: Sequence[float], num_classes: int, width: int, depth: int, in_channels: int
    ) -> SegmentationModel:
        return MRN(mpps, fusion=fusion, num_classes=num_classes, width=width, depth=depth, in_channels=in_channels)

    build.__doc__ = f"MRN with {fusion} upscaling of the cropped coarse maps."
    return build


#: Registered architectures: name -> builder taking the keyword arguments of :func:`create_model`.
MODELS: dict[str, Callable[..., SegmentationModel]] = {
    "unet": _unet,
    "mrn_bilinear": _mrn("bilinear"),
    "mrn_transposed": _mrn("transposed"),
}


def model_names() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return list(MODELS)


def create_model(
    name: str,
    *,
    mpps: Sequence[float],
    num_classes: int = 1,
    width: int = 32,
    depth: int = 4,
    in_channels: int = 3,
) -> SegmentationModel:
    """Build a registered network and record its hyper-parameters in ``model.hparams``.

    Parameters
    ----------
    name
        ``"unet"``, ``"mrn_bilinear"`` or ``"mrn_transposed"``.
    mpps
        Microns per pixel of the input patches, finest first (one value for ``unet``).
    num_classes
        Logit channels C.
    width
        Base channels F (doubling per level).
    depth
        Pooling levels D.
    in_channels
        Image channels per patch.

    Returns
    -------
    SegmentationModel
        Maps ``(N, J, in_channels, H, W)`` float to logits ``(N, num_classes, H, W)`` of the finest
        patch; has ``.hparams`` and ``.required_multiple`` (H and W must be multiples of it).

    Raises
    ------
    ModelConfigError
        Unknown name or a configuration the network cannot take.
    """
    if name not in MODELS:
        raise ModelConfigError(f"unknown model {name!r}; choose one of {model_names()}")
    if isinstance(mpps, (str, bytes)) or not isinstance(mpps, Sequence):
        raise ModelConfigError(f"mpps must be a sequence of microns per pixel, got {mpps!r}")
    return MODELS[name](mpps=mpps, num_classes=num_classes, width=width, depth=depth, in_channels=in_channels)
