"""``mrseg demo``: the paper's experiment end to end on the embedded synthetic data, in minutes on a CPU.

>>> from mrseg.demo import quick_settings, run_demo
>>> result = run_demo("mrseg-demo", quick_settings())       # doctest: +SKIP
>>> result.results["models"]["mrn_bilinear"]["test"]["auc"]  # doctest: +SKIP

See :mod:`mrseg.demo.pipeline` for the stages and the folder layout, :mod:`mrseg.demo.settings` for
the presets, and ``docs/results.md`` for measured numbers.
"""

from __future__ import annotations

from mrseg.demo.cache import StageCache, StageRecord, stage_key
from mrseg.demo.pipeline import DemoResult, run_demo
from mrseg.demo.settings import (
    MODELS,
    SPLITS,
    DemoSettings,
    ModelSpec,
    SplitSize,
    default_settings,
    quick_settings,
)

__all__ = [
    "MODELS",
    "SPLITS",
    "DemoResult",
    "DemoSettings",
    "ModelSpec",
    "SplitSize",
    "StageCache",
    "StageRecord",
    "default_settings",
    "quick_settings",
    "run_demo",
    "stage_key",
]
