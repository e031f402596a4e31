"""Prediction settings: validation, the tissue settings' precedence, and the resumability key."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mrseg.core.errors import ConfigError
from mrseg.core.tissue_spec import TissueSettings
from mrseg.inference.settings import DEFAULT_WRITERS, RUN_ONLY, PredictSettings


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"overlap": 1.0}, "overlap"),
        ({"batch_size": 0}, ">= 1"),
        ({"writer_threads": 0}, "writer_threads"),
        ({"threshold": 0.0}, "threshold"),
        ({"ramp": "cosine"}, "ramp"),
        ({"precision": "fp8"}, "precision"),
        ({"slide_mpp": 0.0}, "slide_mpp"),
        ({"tissue_mpp": -1.0}, "tissue_mpp"),
        ({"writers": "tiff"}, "writers"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PredictSettings(**kwargs)  # type: ignore[arg-type]


def test_defaults() -> None:
    s = PredictSettings()
    assert s.device == "auto" and s.backend == "auto" and s.writers == DEFAULT_WRITERS
    assert PredictSettings(writers=["tiff", "tiff", "geojson"]).writers == ("tiff", "geojson")  # type: ignore[arg-type]


def test_tissue_settings_precedence() -> None:
    trained = TissueSettings(mpp=16.0, min_saturation=0.1)
    assert PredictSettings().tissue_settings(None) == TissueSettings()
    assert PredictSettings().tissue_settings(trained) == trained
    own = TissueSettings(mpp=4.0)
    assert PredictSettings(tissue=own).tissue_settings(trained) == own
    assert PredictSettings(tissue_mpp=2.0).tissue_settings(trained) == TissueSettings(mpp=2.0, min_saturation=0.1)
    resolved = PredictSettings(tissue_mpp=2.0).resolve(trained)
    assert resolved.tissue == TissueSettings(mpp=2.0, min_saturation=0.1) and resolved.tissue_mpp is None


def test_identity_holds_the_resolved_output_defining_values() -> None:
    resolved = PredictSettings(device="cpu", batch_size=3).resolve(None)
    identity = resolved.identity()
    assert not set(RUN_ONLY) & set(identity)
    assert identity["tissue"] == TissueSettings().to_dict() and identity["writers"] == list(DEFAULT_WRITERS)
    assert json.loads(json.dumps(identity)) == identity  # plain JSON
    assert (
        PredictSettings(device="cuda", backend="tiffslide").resolve(None).identity()
        == PredictSettings().resolve(None).identity()
    )
    assert PredictSettings(overlap=0.5).resolve(None).identity() != identity


def test_settings_import_no_torch() -> None:
    code = "import sys, mrseg.inference.settings; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
