"""The writer interface and its registry: every per-slide output of ``mrseg predict`` is a :class:`Writer`.

A writer says which files it writes (:meth:`Writer.outputs`, keys of the prediction record's
``outputs``) and writes them from a :class:`WriteJob` (the merged map, the open slide, the label
spec, the settings). Writers write into the slide's scratch folder; the runner renames the files
into place when every writer is done, the JSON record last, so an interrupted slide leaves no
final-named file. :func:`register_writer` adds a writer class (the built-in ones and a user's);
``PredictSettings.writers`` chooses them by name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from mrseg.core.errors import ConfigError
from mrseg.core.label_spec import LabelSpec
from mrseg.inference.inferer import SlidePrediction
from mrseg.inference.settings import PredictSettings
from mrseg.wsi.slide import Slide


@dataclass
class WriteJob:
    """What a writer gets: one slide's prediction and its context.

    Attributes
    ----------
    folder
        Where to write (the slide's scratch folder; files are renamed into place afterwards).
    names
        ``{output key: file name}`` of every writer of this slide (:meth:`path` joins them to ``folder``).
    prediction
        The merged map (:class:`~mrseg.inference.merger.ProbabilityMap`), tiling, level-0
        dimensions and mpp, tissue fraction, pixels read and timings.
    slide
        The open slide (the one handle of this slide's run; thumbnails come from it).
    labels
        The checkpoint's label spec (class names and colours).
    settings
        The resolved prediction settings.
    checkpoint
        The record's description of the checkpoint (path, sha256, model, input and label specs).
    run
        How the run was executed (resolved device, batch size): the record's ``run``.
    facts
        ``{writer name: what it reported}`` for the writers that ran before (the record writes them):
        a writer that is not :attr:`Writer.concurrent` sees those of every concurrent writer and of
        the writers before it.
    """

    folder: Path
    names: dict[str, str]
    prediction: SlidePrediction
    slide: Slide
    labels: LabelSpec
    settings: PredictSettings
    checkpoint: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def path(self, key: str) -> Path:
        """Scratch path of output ``key``."""
        return self.folder / self.names[key]


class Writer(ABC):
    """One kind of per-slide output. Subclasses set :attr:`name` and implement both methods."""

    #: Registry name, chosen in ``PredictSettings.writers``; also names the timing ``write_<name>_s``.
    name: ClassVar[str]
    #: May run at the same time as other such writers (``PredictSettings.writer_threads``): it only reads
    #: the job (the map, the slide, the settings) and writes its own files. False (the default for a new
    #: writer): it runs after them, alone, and sees their facts in ``job.facts``.
    concurrent: ClassVar[bool] = False

    @abstractmethod
    def outputs(self, stem: str, labels: LabelSpec) -> dict[str, str]:
        """``{output key: file name}`` this writer writes for slide ``stem`` (may be empty: it is then skipped)."""

    @abstractmethod
    def write(self, job: WriteJob) -> dict[str, Any]:
        """Write the files of :meth:`outputs` to ``job.path(key)``; return facts for the record (or ``{}``)."""


W = TypeVar("W", bound=type[Writer])

#: Registered writer classes by name.
WRITERS: dict[str, type[Writer]] = {}


def register_writer(cls: W) -> W:
    """Register a :class:`Writer` subclass under its ``name`` (usable as a class decorator).

    Raises
    ------
    ConfigError
        Not a Writer subclass, no ``name``, or the name is taken by another class.
    """
    if not (isinstance(cls, type) and issubclass(cls, Writer)):
        raise ConfigError(f"{cls!r} is not a Writer subclass")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"writer {cls.__name__} needs a class attribute `name`")
    if WRITERS.get(name, cls) is not cls:
        raise ConfigError(f"writer name {name!r} is already registered by {WRITERS[name].__name__}")
    WRITERS[name] = cls
    return cls


def create_writers(names: Sequence[str]) -> list[Writer]:
    """Instances of the writers ``names``, in that order.

    Raises
    ------
    ConfigError
        An unknown name (the message lists the registered ones).
    """
    unknown = [n for n in names if n not in WRITERS]
    if unknown:
        raise ConfigError(f"unknown writer(s) {unknown}; registered: {sorted(WRITERS)}")
    return [WRITERS[n]() for n in names]


__all__ = ["WRITERS", "WriteJob", "Writer", "create_writers", "register_writer"]
