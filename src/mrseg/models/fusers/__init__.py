"""Fusers: what combines the J aligned maps of one feature level into the decoder's skip.

:mod:`~mrseg.models.fusers.base` holds the interface (:class:`Fuser`) and the registry; each fuser
lives in its own module and registers itself with :func:`register_fuser`. Importing this package
registers the built-in ones below (add a line here for a new fuser).
"""

from __future__ import annotations

from mrseg.models.fusers import concat, gated  # noqa: F401 - importing a fuser module registers it
from mrseg.models.fusers.base import FUSERS, Fuser, create_fuser, fuser_class, fuser_names, register_fuser

#: The paper's fuser, used unless ``fuser=`` says otherwise.
DEFAULT_FUSER = "concat"

__all__ = [
    "DEFAULT_FUSER",
    "FUSERS",
    "Fuser",
    "create_fuser",
    "fuser_class",
    "fuser_names",
    "register_fuser",
]
