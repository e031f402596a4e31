"""Several demo runs (seeds) together: mean ± std per model and the paired MRN - best U-Net difference.

``python -m mrseg.report DIR [DIR ...]`` (or ``python -m mrseg.demo.seeds``) reads each folder's
``results.json`` and prints Markdown tables:

* per model and metric, the mean, sample standard deviation, min and max over the runs;
* per MRN and metric (test AUC, test Dice@0.5), the *paired* difference: on each seed the MRN's value
  minus the best single-resolution U-Net's value *on that seed by that metric*; then the mean
  difference, its standard error ``sd / sqrt(n)``, the 95% confidence interval from the
  t-distribution with ``n - 1`` degrees of freedom, and in how many seeds the MRN won (difference > 0);
* per seed and MRN, the demo's goal (:func:`seed_goals`): beats every U-Net on test AUC and on Dice, and on
  the test slides' mimics and nests (``mimic`` in results.json) a mean p of at most :data:`MIMIC_MAX` in
  mimics and at least :data:`NEST_MIN` in nests.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scipy import stats

from mrseg.core.errors import DataError

#: Metrics summarised over seeds by :func:`aggregate_seeds`.
AGGREGATED: tuple[str, ...] = ("auc", "dice", "iou", "best_dice")
#: (split, metric) pairs of the paired comparison, with their display names.
PAIRED: tuple[tuple[str, str, str], ...] = (("test", "auc", "test AUC"), ("test", "dice", "test Dice@0.5"))


#: The demo's goal on mimics (mean p at most this) and on tumour nests (mean p at least this).
MIMIC_MAX: float = 0.3
NEST_MIN: float = 0.8


@dataclass(frozen=True)
class SeedGoal:
    """One MRN on one seed against the demo's goal (test split); ``None`` where results.json lacks a value."""

    seed: Any
    model: str
    beats_auc: bool
    beats_dice: bool
    nest: float | None
    mimic: float | None

    @property
    def met(self) -> bool:
        """Beats every U-Net on AUC and Dice, rejects mimics and keeps nests."""
        return (
            self.beats_auc
            and self.beats_dice
            and self.mimic is not None
            and self.mimic <= MIMIC_MAX
            and self.nest is not None
            and self.nest >= NEST_MIN
        )


def best_unet(models: Mapping[str, Any], split: str, metric: str) -> tuple[str, float] | None:
    """The U-Net (``unet_*`` key) with the highest ``metric`` on ``split`` and that value; NaN values are left out.

    None when no U-Net has a value. "Beats every U-Net" means beating this one.
    """
    values = {k: float(v[split][metric]) for k, v in models.items() if k.startswith("unet")}
    values = {k: v for k, v in values.items() if not math.isnan(v)}
    if not values:
        return None
    key = max(values, key=lambda k: values[k])
    return key, values[key]


def seed_goals(runs: Sequence[Mapping[str, Any]]) -> list[SeedGoal]:
    """:class:`SeedGoal` of every MRN (``mrn_*``) on every run, in run order."""
    goals = []
    for run in runs:
        models = run["models"]
        auc, dice = best_unet(models, "test", "auc"), best_unet(models, "test", "dice")
        for key in (k for k in models if k.startswith("mrn")):
            test = models[key]["test"]
            mimic = models[key].get("mimic_by_split", {}).get("test") or models[key].get("mimic") or {}
            goals.append(
                SeedGoal(
                    run.get("seed"),
                    key,
                    auc is not None and float(test["auc"]) > auc[1],
                    dice is not None and float(test["dice"]) > dice[1],
                    mimic.get("tumour_mean"),
                    mimic.get("mimic_mean"),
                )
            )
    return goals


def _goal_table(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    goals = seed_goals(runs)
    lines = [
        f"Per seed, test split: beats every U-Net on AUC / on Dice@0.5; mean p in nests (higher is better, goal "
        f">= {NEST_MIN}) and in mimics (lower is better, goal <= {MIMIC_MAX}).",
        "",
        "| seed | MRN | beats on AUC | beats on Dice | nests | mimics | goal met |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in goals:
        label = runs[0]["models"][g.model]["label"]
        lines.append(
            f"| {g.seed} | {label} | {'yes' if g.beats_auc else 'no'} | {'yes' if g.beats_dice else 'no'} "
            f"| {_f(g.nest, 2)} | {_f(g.mimic, 2)} | {'yes' if g.met else 'no'} |"
        )
    for key in dict.fromkeys(g.model for g in goals):
        mine = [g for g in goals if g.model == key]
        label = runs[0]["models"][key]["label"]
        lines.append(f"\n{label}: goal met in {sum(g.met for g in mine)} of {len(mine)} seeds.")
    return lines


def _f(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def aggregate_seeds(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """Mean, sample standard deviation, min, max and count of each metric over several demo runs (seeds).

    Parameters
    ----------
    runs
        ``results.json`` contents of demo runs with the same models (typically ``--seed 0 .. 4``).

    Returns
    -------
    dict
        ``{model key: {split: {metric: {"mean", "std", "min", "max", "n"}}}}``; NaN values are skipped.
    """
    out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    keys = [k for k in runs[0]["models"] if all(k in r["models"] for r in runs)] if runs else []
    for key in keys:
        out[key] = {}
        for split in ("val", "test"):
            out[key][split] = {}
            for metric in AGGREGATED:
                values = [float(r["models"][key][split][metric]) for r in runs]
                values = [v for v in values if not math.isnan(v)]
                out[key][split][metric] = {
                    "mean": statistics.fmean(values) if values else math.nan,
                    "std": statistics.stdev(values) if len(values) > 1 else math.nan,
                    "min": min(values) if values else math.nan,
                    "max": max(values) if values else math.nan,
                    "n": float(len(values)),
                }
    return out


@dataclass(frozen=True)
class PairedDifference:
    """One MRN against the best U-Net of each seed, on one metric.

    ``diffs`` are the per-seed differences (MRN minus that seed's best U-Net, seeds in input order),
    ``rivals`` the best U-Net's key on each seed; ``se`` is ``sd / sqrt(n)``; ``ci`` the 95%
    t-interval of the mean; ``wins`` counts seeds with a positive difference.
    """

    model: str
    metric: str
    diffs: tuple[float, ...]
    rivals: tuple[str, ...]
    mean: float
    sd: float
    se: float
    ci: tuple[float, float]
    wins: int

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def clear(self) -> bool:
        """The mean difference is positive and larger than twice its standard error."""
        return self.n > 1 and self.mean > 2 * self.se


def paired_difference(runs: Sequence[Mapping[str, Any]], model: str, split: str, metric: str) -> PairedDifference:
    """The paired difference of ``model`` minus the best U-Net (``unet_*`` keys) per run on ``split``/``metric``.

    Runs where the MRN's or every U-Net's value is NaN are left out.
    """
    diffs, rivals = [], []
    for run in runs:
        rival = best_unet(run["models"], split, metric)
        value = float(run["models"][model][split][metric])
        if rival is None or math.isnan(value):
            continue
        diffs.append(value - rival[1])
        rivals.append(rival[0])
    n = len(diffs)
    mean = statistics.fmean(diffs) if diffs else math.nan
    sd = statistics.stdev(diffs) if n > 1 else math.nan
    se = sd / math.sqrt(n) if n > 1 else math.nan
    half = float(stats.t.ppf(0.975, n - 1)) * se if n > 1 else math.nan
    wins = sum(d > 0 for d in diffs)
    return PairedDifference(model, metric, tuple(diffs), tuple(rivals), mean, sd, se, (mean - half, mean + half), wins)


def paired_differences(runs: Sequence[Mapping[str, Any]]) -> list[PairedDifference]:
    """:func:`paired_difference` of every MRN (``mrn_*`` keys) on each of :data:`PAIRED`."""
    if not runs:
        return []
    mrns = [k for k in runs[0]["models"] if k.startswith("mrn") and all(k in r["models"] for r in runs)]
    return [paired_difference(runs, key, split, metric) for key in mrns for split, metric, _ in PAIRED]


def _mean_table(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    agg = aggregate_seeds(runs)
    lines = ["| model | test AUC | val AUC | test Dice@0.5 | test best Dice |", "|---|---|---|---|---|"]
    for key, splits in agg.items():
        label = runs[0]["models"][key]["label"]

        def cell(split: str, metric: str, splits: Any = splits) -> str:
            s = splits[split][metric]
            return f"{_f(s['mean'])} ± {_f(s['std'])} ({_f(s['min'])}-{_f(s['max'])})"

        lines.append(
            f"| {label} | {cell('test', 'auc')} | {cell('val', 'auc')} | {cell('test', 'dice')} "
            f"| {cell('test', 'best_dice')} |"
        )
    return lines


def _paired_table(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    names = {metric: name for _, metric, name in PAIRED}
    lines = [
        "| MRN | metric | mean difference | SE | 95% CI (t) | wins | mean > 2 SE |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in paired_differences(runs):
        label = runs[0]["models"][d.model]["label"]
        ci = f"[{d.ci[0]:+.4f}, {d.ci[1]:+.4f}]" if d.n > 1 else "n/a"
        lines.append(
            f"| {label} | {names[d.metric]} | {d.mean:+.4f} | {_f(d.se)} | {ci} | {d.wins} of {d.n} "
            f"| {'yes' if d.clear else 'no'} |"
        )
    return lines


def aggregate_markdown(runs: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: mean ± std (min-max) per model, then the paired MRN - best U-Net differences."""
    seeds = ", ".join(str(r.get("seed")) for r in runs)
    lines = [f"Seeds {seeds} ({len(runs)} runs); mean ± sample std (min-max).", "", *_mean_table(runs), ""]
    lines += [
        "Paired difference per seed: MRN minus the best U-Net of that seed on that metric (higher is better "
        "for the MRN); SE = sd / sqrt(n); 95% CI from the t-distribution with n - 1 degrees of freedom.",
        "",
        *_paired_table(runs),
        "",
        *_goal_table(runs),
    ]
    return "\n".join(lines)


class ReportInputError(DataError):
    """A folder given to ``python -m mrseg.report`` is not a finished demo run (the message says which and why)."""


def load_run(folder: str | Path) -> dict[str, Any]:
    """The ``results.json`` of one demo folder, or :class:`ReportInputError` naming the folder."""
    folder = Path(folder)
    path = folder / "results.json"
    if not folder.is_dir():
        raise ReportInputError(f"{folder}: not a folder (give the --out folders of mrseg demo runs)")
    if not path.is_file():
        raise ReportInputError(f"{folder}: no results.json (not a demo folder, or its run did not finish)")
    try:
        run = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportInputError(f"{path}: unreadable ({error})") from None
    if not isinstance(run, dict) or not isinstance(run.get("models"), dict):
        raise ReportInputError(f"{path}: not a demo result (no 'models' table)")
    return run


def main(argv: list[str] | None = None) -> int:
    """``python -m mrseg.report DIR [DIR ...]``: print the over-seeds tables of several demo folders.

    A folder that is not a finished demo run ends the command with one line on stderr and status 1
    (``--debug`` shows the traceback).
    """
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    folders = [a for a in args if a != "--debug"]
    if not folders:
        sys.stderr.write("usage: python -m mrseg.report DEMO_DIR [DEMO_DIR ...] [--debug]\n")
        return 2
    try:
        runs = [load_run(a) for a in folders]
        text = aggregate_markdown(runs)
    except ReportInputError as error:
        if debug:
            raise
        sys.stderr.write(f"error: {error}\n")
        return 1
    except (KeyError, TypeError, ValueError) as error:
        if debug:
            raise
        sys.stderr.write(
            f"error: {' '.join(folders)}: a results.json lacks what the report needs ({type(error).__name__}: "
            f"{error}); are these folders of mrseg demo runs of this version? (--debug shows the traceback)\n"
        )
        return 1
    sys.stdout.write(text + "\n")
    return 0


__all__ = [
    "AGGREGATED",
    "MIMIC_MAX",
    "NEST_MIN",
    "PairedDifference",
    "ReportInputError",
    "SeedGoal",
    "aggregate_markdown",
    "aggregate_seeds",
    "best_unet",
    "load_run",
    "main",
    "paired_difference",
    "paired_differences",
    "seed_goals",
]


if __name__ == "__main__":
    raise SystemExit(main())
