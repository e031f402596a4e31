"""Every default a command shows is the library's: a CLI default that drifts from it fails here.

Each option of each command is either mapped (in :data:`LIBRARY`) to the library value it stands
for, or listed in :data:`CLI_ONLY` with the reason it has no library counterpart. A new option
that is in neither fails :func:`test_every_option_is_accounted_for`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from enum import Enum
from typing import Any, get_args

import pytest
import typer

from mrseg.cli import app
from mrseg.cli.options import backend_option
from mrseg.core.tissue_spec import TissueSettings
from mrseg.demo import DemoSettings, run_demo
from mrseg.evaluation.settings import EvaluateSettings, LesionSettings, Within
from mrseg.inference.cluster import predict_slides
from mrseg.inference.settings import PRECISIONS, PredictSettings
from mrseg.inference.writers import WRITERS
from mrseg.models.export import FORMATS, export_checkpoint
from mrseg.models.mrn import MRN
from mrseg.models.unet import UNet
from mrseg.synth import LABEL_SCHEMES, generate
from mrseg.training.loop import train
from mrseg.training.sections import ModelConfig
from mrseg.view.catalog import build_catalog
from mrseg.view.server import ViewServer
from mrseg.wsi.backends.registry import backend_names
from mrseg.wsi.slide import Slide

GROUP = typer.main.get_command(app)


def arg(function: Callable[..., Any], name: str) -> Any:
    """The default of ``function``'s parameter ``name``."""
    default = inspect.signature(function).parameters[name].default
    assert default is not inspect.Parameter.empty, f"{function.__qualname__}({name}) has no default"
    return default


def model_default(name: str) -> Any:
    """The default of a model option, the same in every architecture."""
    values = {arg(cls.__init__, name) for cls in (UNet, MRN)}
    assert len(values) == 1, f"architectures disagree on {name}: {values}"
    return values.pop()


_SLIDE = {"slide_mpp": lambda: arg(Slide.open, "mpp"), "backend": lambda: arg(Slide.open, "backend")}
_PREDICT = PredictSettings()
#: The PredictSettings fields that are ``mrseg predict`` options of the same name.
_PREDICT_FIELDS = (
    "device", "backend", "precision", "engine", "batch_size", "overlap", "tissue_mask", "tissue_mpp", "slide_mpp",
    "out_mpp", "writers", "threshold", "float16", "ramp", "loader_threads",
)  # fmt: skip
_EVALUATE = EvaluateSettings()
_LESIONS = LesionSettings()

#: (command, parameter) -> the library value its default must equal.
LIBRARY: dict[tuple[str, str], Callable[[], Any]] = {
    ("info", "slide_mpp"): _SLIDE["slide_mpp"],
    ("info", "backend"): _SLIDE["backend"],
    ("patch", "mpps"): lambda: ModelConfig().mpps,
    ("patch", "size"): lambda: ModelConfig().patch_size,
    ("patch", "slide_mpp"): _SLIDE["slide_mpp"],
    ("patch", "backend"): _SLIDE["backend"],
    ("annotations", "slide_mpp"): _SLIDE["slide_mpp"],
    ("tissue", "tissue_mpp"): lambda: TissueSettings().mpp,
    ("tissue", "slide_mpp"): _SLIDE["slide_mpp"],
    ("synth", "seed"): lambda: arg(generate, "seed"),
    ("synth", "size"): lambda: arg(generate, "size_px"),
    ("synth", "slide_mpp"): lambda: arg(generate, "mpp"),
    ("synth", "split"): lambda: arg(generate, "split"),
    ("synth", "workers"): lambda: arg(generate, "workers"),
    ("synth", "threads"): lambda: arg(generate, "threads"),
    ("synth", "labels"): lambda: arg(generate, "labels"),
    ("synth", "overwrite"): lambda: arg(generate, "overwrite"),
    ("models", "size"): lambda: ModelConfig().patch_size,
    ("models", "mpps"): lambda: ModelConfig().mpps,
    ("models", "width"): lambda: model_default("width"),
    ("models", "depth"): lambda: model_default("depth"),
    ("models", "classes"): lambda: model_default("num_classes"),
    ("models", "encoder"): lambda: (model_default("encoder"),),
    ("export", "format"): lambda: arg(export_checkpoint, "format"),
    ("export", "atol"): lambda: arg(export_checkpoint, "atol"),
    ("train", "device"): lambda: arg(train, "device"),
    ("train", "progress"): lambda: arg(train, "progress"),
    **{("predict", name): (lambda name=name: getattr(_PREDICT, name)) for name in _PREDICT_FIELDS},
    ("predict", "overwrite"): lambda: arg(predict_slides, "overwrite"),
    ("predict", "scheduler"): lambda: arg(predict_slides, "scheduler"),
    ("predict", "workers"): lambda: arg(predict_slides, "workers"),
    ("evaluate", "eval_mpp"): lambda: _EVALUATE.mpp,
    ("evaluate", "within"): lambda: _EVALUATE.within,
    ("evaluate", "tissue_mpp"): lambda: _EVALUATE.tissue_mpp,
    ("evaluate", "panel"): lambda: _EVALUATE.panels,
    ("evaluate", "bins"): lambda: _EVALUATE.bins,
    ("view", "truth"): lambda: arg(build_catalog, "truth"),
    ("view", "slide_mpp"): lambda: arg(build_catalog, "slide_mpp"),
    ("view", "backend"): lambda: arg(build_catalog, "backend"),
    ("view", "host"): lambda: arg(ViewServer.__init__, "host"),
    ("view", "port"): lambda: arg(ViewServer.__init__, "port"),
    ("view", "cache_mb"): lambda: arg(ViewServer.__init__, "cache_mb"),
    ("evaluate", "slides"): lambda: _EVALUATE.slides,
    ("evaluate", "missing_truth"): lambda: _EVALUATE.missing_truth,
    ("evaluate", "froc_mpp"): lambda: _LESIONS.mpp,
    ("evaluate", "detection"): lambda: _LESIONS.detection,
    ("evaluate", "detection_mpp"): lambda: _LESIONS.detection_mpp,
    ("evaluate", "detection_threshold"): lambda: _LESIONS.threshold,
    ("evaluate", "nms_radius_um"): lambda: _LESIONS.nms_radius_um,
    ("evaluate", "slide_score"): lambda: _LESIONS.slide_score,
    ("demo", "device"): lambda: DemoSettings().device,
    ("demo", "seed"): lambda: DemoSettings().seed,
    ("demo", "fresh"): lambda: arg(run_demo, "fresh"),
}

#: (command, parameter) -> why the CLI owns this default.
CLI_ONLY: dict[tuple[str, str], str] = {
    ("", "verbose"): "log level",
    ("", "quiet"): "log level",
    ("", "debug"): "tracebacks",
    ("", "version"): "prints the version",
    ("info", "as_json"): "output format",
    ("annotations", "slide"): "optional input",
    ("annotations", "as_json"): "output format",
    ("annotations", "overlay"): "output path (default derived from the file name)",
    ("tissue", "out"): "optional output",
    ("tissue", "as_json"): "output format",
    ("synth", "slides"): "generate() takes the number of slides without a default",
    ("models", "as_json"): "output format",
    ("models", "backbones"): "chooses the encoders (all tested backbones)",
    ("models", "per_j"): "chooses the rows",
    ("train", "config"): "required unless --resume",
    ("train", "data"): "optional (the config's data.path)",
    ("train", "out"): "required unless --resume",
    ("train", "overrides"): "none",
    ("train", "resume"): "optional",
    ("predict", "geojson"): "adds the geojson writer to --writers",
    ("patch", "overwrite"): "the CLI refuses an existing --out file unless given",
    ("export", "overwrite"): "the CLI refuses an existing --out file unless given",
    ("evaluate", "froc"): "EvaluateSettings.lesions is None unless --froc",
    ("predict", "threads"): "torch's own default",
    ("view", "pred"): "none (the slides alone)",
    ("view", "open_browser"): "opens a web browser",
    ("demo", "out"): "the demo folder",
    ("demo", "quick"): "chooses the preset (quick_settings or default_settings)",
    ("demo", "overrides"): "none",
    ("demo", "workers"): "the preset's workers, at most the CPUs (computed in the command)",
    ("demo", "jobs"): "the preset's jobs (DemoSettings.jobs: min(2, CPUs), machine-dependent)",
}


def _options() -> list[tuple[str, Any]]:
    """``(command name, parameter)`` of every option with a default ("" is the root group)."""
    found = [("", param) for param in GROUP.params]
    for name, command in GROUP.commands.items():
        found += [(name, param) for param in command.params]
    return [(name, p) for name, p in found if p.param_type_name == "option" and not p.required]


def _normal(value: Any) -> Any:
    """Comparable form: sequences as tuples, numeric strings as floats, enums as their values."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return tuple(_normal(v) for v in value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def test_every_option_is_accounted_for() -> None:
    keys = {(name, param.name) for name, param in _options()}
    missing = sorted(keys - set(LIBRARY) - set(CLI_ONLY))
    assert not missing, f"map these options to the library's default in LIBRARY, or list them in CLI_ONLY: {missing}"
    stale = sorted((set(LIBRARY) | set(CLI_ONLY)) - keys)
    assert not stale, f"no such options: {stale}"
    assert not set(LIBRARY) & set(CLI_ONLY)


@pytest.mark.parametrize(("command", "param"), [(n, p) for n, p in _options() if (n, p.name) in LIBRARY], ids=str)
def test_default_is_the_librarys(command: str, param: Any) -> None:
    library = LIBRARY[(command, param.name)]()
    assert _normal(param.default) == _normal(library), f"mrseg {command} {param.opts[0]}"


def test_choices_are_the_librarys() -> None:
    """The choices the help shows are the library's (backends, precisions, label schemes, formats, writers)."""
    params = {(name, p.name): p for name, p in _options()}
    assert params[("predict", "precision")].metavar == "|".join(PRECISIONS)
    assert params[("evaluate", "within")].metavar == "|".join(get_args(Within))
    assert params[("synth", "labels")].metavar.split("|") == list(LABEL_SCHEMES)
    assert params[("export", "format")].metavar.split("|") == list(FORMATS)
    help_text = params[("predict", "writers")].help
    assert all(name in help_text for name in WRITERS), (help_text, sorted(WRITERS))
    for key in [("info", "backend"), ("patch", "backend"), ("predict", "backend")]:
        assert all(name in params[key].help for name in backend_names())
    assert backend_option().help == params[("predict", "backend")].help
