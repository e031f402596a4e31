"""The plan of an evaluation: the truth and prediction sets found, checked against each other.

:func:`plan_evaluation` finds the ground truth (:func:`mrseg.evaluation.truth.find_truth`) and each
model's prediction records (:func:`mrseg.core.prediction_record.find_prediction_records`), selects
the slides every model can be scored on (the requested ones; slides without truth or without a
prediction are named in a warning and in ``metrics.json``, not refused:
:func:`mrseg.evaluation.truth.select_slides`), checks that the records share one label spec, and
resolves the slides to draw panels for. Everything that can be wrong with the inputs is found here,
before any pixel is read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from mrseg.core.errors import DataError
from mrseg.core.label_spec import LabelSpec
from mrseg.core.prediction_record import PredictionRecord, find_prediction_records
from mrseg.evaluation.settings import EvaluateSettings
from mrseg.evaluation.truth import SlideSelection, TruthEntry, find_truth, select_slides

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationPlan:
    """What :func:`evaluate` will compare: checked slide sets, one label spec, the panels to draw.

    Attributes
    ----------
    settings
        The evaluation settings.
    truth_source
        TRUTH as given (recorded in ``metrics.json``).
    folders
        ``{model: prediction folder}`` as given.
    truth
        ``{stem: truth entry}`` (slides assumed tumour-free have an entry without file).
    records
        ``{model: {stem: prediction record}}``; every model has a record of every slide of ``stems``.
    stems
        The slides evaluated, sorted.
    panels
        Stems to draw a qualitative panel for.
    labels
        The label spec shared by every prediction record.
    selection
        The slides evaluated and those left out (``missing`` of ``metrics.json``).
    """

    settings: EvaluateSettings
    truth_source: str
    folders: dict[str, str]
    truth: dict[str, TruthEntry]
    records: dict[str, dict[str, PredictionRecord]]
    stems: list[str]
    panels: tuple[str, ...]
    labels: LabelSpec
    selection: SlideSelection

    @property
    def models(self) -> list[str]:
        return list(self.records)

    @property
    def multiclass(self) -> bool:
        """More than two classes: per-class metrics and the confusion matrix are computed too."""
        return not self.labels.is_binary

    def slide_records(self, stem: str) -> dict[str, PredictionRecord]:
        """``{model: record}`` of one slide, after checking that the models agree on the slide's size."""
        records = {name: self.records[name][stem] for name in self.records}
        first = next(iter(records.values()))
        for other in records.values():
            if other.slide_dimensions != first.slide_dimensions:
                raise DataError(
                    f"{stem}: models disagree on the slide size ({first.slide_dimensions} vs {other.slide_dimensions})"
                )
        return records


def plan_evaluation(
    preds: Mapping[str, str | os.PathLike[str]], truth: str | os.PathLike[str], settings: EvaluateSettings
) -> EvaluationPlan:
    """Find the truth and the predictions and check that they fit together.

    Raises
    ------
    DataError
        Missing folders/files, no predictions, no slide with both truth and every model's prediction,
        unknown panel stems, or predictions with different label specs.
    """
    if not preds:
        raise DataError("no prediction folder given")
    entries = find_truth(truth)
    records = {name: find_prediction_records(folder) for name, folder in preds.items()}
    selection = select_slides(entries, records, settings.slides, assume_normal=settings.missing_truth == "normal")
    for line in selection.warnings():
        log.warning("%s", line)
    stems = selection.stems
    entries = entries | {s: TruthEntry(s, None) for s in selection.assumed_normal}
    records = {name: {s: by_stem[s] for s in stems} for name, by_stem in records.items()}
    panels = settings.panels if settings.panels else tuple(stems[:1])
    unknown = [s for s in panels if s not in stems]
    if unknown:
        raise DataError(f"--panel: unknown slide(s) {', '.join(unknown)}; known: {', '.join(stems)}")
    return EvaluationPlan(
        settings=settings,
        truth_source=str(truth),
        folders={name: str(folder) for name, folder in preds.items()},
        truth=entries,
        records=records,
        stems=stems,
        panels=panels,
        labels=common_labels(records),
        selection=selection,
    )


def common_labels(records: Mapping[str, Mapping[str, PredictionRecord]]) -> LabelSpec:
    """The label spec of every record (classes and label map must agree), or :class:`DataError`."""
    all_records = [r for by_stem in records.values() for r in by_stem.values()]
    first = all_records[0]
    for other in all_records[1:]:
        same = other.labels.classes == first.labels.classes and other.labels.label_map == first.labels.label_map
        if not same:
            raise DataError(
                f"predictions with different label specs: {first.path} has classes {list(first.labels.classes)}, "
                f"{other.path} has {list(other.labels.classes)} (or their label maps differ)"
            )
    return first.labels


__all__ = ["EvaluationPlan", "common_labels", "plan_evaluation"]
