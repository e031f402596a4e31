"""The README's Python API example runs as written (on a generated slide and annotation file)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _api_example() -> str:
    text = README.read_text()
    section = text[text.index("## Python API") :]
    return section.split("```python", 1)[1].split("```", 1)[0]


def test_python_api_example_runs(tmp_path: Path, rgb_tiff: Callable[..., Path]) -> None:
    slide = rgb_tiff(name="slide.tif")
    xml = tmp_path / "slide.xml"
    xml.write_text(
        '<ASAP_Annotations><Annotations><Annotation Name="a" Type="Polygon" PartOfGroup="_0"><Coordinates>'
        '<Coordinate Order="0" X="11900" Y="7900"/><Coordinate Order="1" X="12100" Y="7900"/>'
        '<Coordinate Order="2" X="12100" Y="8100"/></Coordinates></Annotation></Annotations></ASAP_Annotations>'
    )
    code = _api_example().replace('"slide.svs"', repr(str(slide))).replace('"slide.xml"', repr(str(xml)))
    scope: dict[str, object] = {}
    exec(compile(code, str(README), "exec"), scope)
    assert scope["patches"].shape == (2, 4, 256, 256, 3)  # type: ignore[attr-defined]
    assert scope["labels"].shape == (256, 256) and scope["labels"].max() == 1  # type: ignore[attr-defined]
    assert scope["model"].hparams["name"] == "mrn_bilinear"  # type: ignore[attr-defined]
