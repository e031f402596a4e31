"""The fuser interface and its registry.

A fuser combines the J maps of one feature level, all ``(N, channels, h, w)`` and pixel-aligned
(branch 1 first; branches 2..J already cropped and upscaled to branch 1's field of view), into one
``(N, channels, h, w)`` map, the decoder's skip at that level. Register a class with
:func:`register_fuser`; the MRN's ``fuser=NAME`` option picks it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from mrseg.core.errors import ModelConfigError


class Fuser(nn.Module):
    """Interface of a fuser, built as ``cls(channels, branches)``.

    Parameters
    ----------
    channels
        Channels of every input map and of the output.
    branches
        J, the number of maps ``forward`` receives (at least 2).
    """

    def __init__(self, channels: int, branches: int) -> None:
        super().__init__()
        self.channels = int(channels)
        self.branches = int(branches)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:  # pragma: no cover - interface
        """``branches`` maps ``(N, channels, h, w)``, finest branch first -> ``(N, channels, h, w)``."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"channels={self.channels}, branches={self.branches}"


#: Registered fusers: name -> class.
FUSERS: dict[str, type[Fuser]] = {}


def register_fuser(name: str) -> Callable[[type[Fuser]], type[Fuser]]:
    """Class decorator: make a :class:`Fuser` subclass selectable as ``fuser=name``."""

    def register(cls: type[Fuser]) -> type[Fuser]:
        if name in FUSERS and FUSERS[name] is not cls:
            raise ModelConfigError(f"fuser {name!r} is already registered ({FUSERS[name].__qualname__})")
        FUSERS[name] = cls
        return cls

    return register


def fuser_names() -> list[str]:
    """Names accepted by the ``fuser`` option."""
    return list(FUSERS)


def fuser_class(name: str) -> type[Fuser]:
    """The class registered as ``name`` (raises :class:`ModelConfigError` naming the choices)."""
    if not isinstance(name, str) or name not in FUSERS:
        raise ModelConfigError(f"unknown fuser {name!r}; choose one of {fuser_names()}")
    return FUSERS[name]


def create_fuser(name: str, channels: int, branches: int) -> Fuser:
    """Build the fuser registered as ``name`` for ``branches`` maps of ``channels`` channels."""
    return fuser_class(name)(channels, branches)
