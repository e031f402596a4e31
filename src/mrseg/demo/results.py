"""``results.json`` of a demo run: every number of the report, machine-readable (one dict per run)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from mrseg import __version__
from mrseg.demo.cache import StageRecord
from mrseg.demo.settings import DemoSettings, ModelSpec


def synth_facts(root: Path, split: str) -> list[dict[str, Any]]:
    """Per-slide facts ``mrseg synth`` wrote for one split (``data/<split>/synth.json``)."""
    data = json.loads((root / "data" / split / "synth.json").read_text())
    return list(data.get("slides", []))


def split_metrics(pooled: dict[str, Any]) -> dict[str, Any]:
    """The demo's summary of one model on one split from the pooled ``metrics.json`` entry."""
    at = pooled["at"]["0.5"]
    best = pooled["best_dice"]
    return {
        "auc": pooled["auc"],
        "dice": at["dice"],
        "iou": at["iou"],
        "precision": at["precision"],
        "recall": at["recall"],
        "best_dice": best["dice"],
        "best_dice_iou": best["iou"],
        "best_dice_threshold": best["threshold"],
        "n_positive": pooled["n_positive"],
        "n_negative": pooled["n_negative"],
    }


def lesion_metrics(lesions: dict[str, Any]) -> dict[str, Any]:
    """The demo's summary of one model's lesion-level entry of ``metrics.json`` (test split)."""
    froc, slide = lesions["froc"], lesions["slide"]
    return {
        "froc": froc["score"],
        "sensitivity": dict(froc["sensitivity"]),
        "n_lesions": froc["n_lesions"],
        "n_itc": froc["n_itc"],
        "n_fp": froc["n_fp"],
        "n_slides": froc["n_slides"],
        "detection": froc["detection"],
        "slide_auc": slide["auc"],
    }


def lesion_rows(results: dict[str, Any]) -> list[list[str]]:
    """Per model with lesion metrics: FROC, sensitivity at 1/4 .. 8 FPs per slide, lesions, ITCs, FPs.

    FROC and sensitivities are ``n/a`` when the test slides hold no lesion beyond isolated tumour cells.
    """
    rows = []
    for entry in results["models"].values():
        m = entry.get("test_lesions")
        if m is not None:
            cells = [m["froc"], *m["sensitivity"].values()]
            counts = [str(m[k]) for k in ("n_lesions", "n_itc", "n_fp")]
            rows.append([entry["label"], *(_num(v) for v in cells), *counts])
    return rows


def _num(value: Any) -> str:
    return "n/a" if value is None or value != value else f"{float(value):.4f}"


#: Headers of :func:`lesion_rows`.
LESION_HEADERS = ["model", "FROC", "sens@1/4", "@1/2", "@1", "@2", "@4", "@8", "lesions", "ITCs", "FPs"]


def machine_facts() -> dict[str, Any]:
    """Platform, CPUs, torch version and threads, load average (where the numbers were measured)."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def build_results(
    root: Path,
    settings: DemoSettings,
    device: str,
    specs: list[ModelSpec],
    metrics: dict[str, dict[str, Any]],
    mimic: dict[str, Any],
    train_info: dict[str, dict[str, Any]],
    records: list[StageRecord],
    panel: str,
) -> dict[str, Any]:
    """The machine-readable summary of one demo run (``results.json``)."""
    models: dict[str, Any] = {}
    for spec in specs:
        entry: dict[str, Any] = {"label": spec.label, "mpps": list(spec.mpps), "train": train_info[spec.key]}
        for split, m in metrics.items():
            entry[split] = split_metrics(m["models"][spec.label]["pooled"])
        lesions = metrics.get("test", {}).get("models", {}).get(spec.label, {}).get("lesions")
        if lesions is not None:
            entry["test_lesions"] = lesion_metrics(lesions)
        entry["mimic"] = mimic["scores"].get(spec.label, {})
        entry["mimic_by_split"] = {k: v.get(spec.label, {}) for k, v in mimic.get("scores_by_split", {}).items()}
        models[spec.key] = entry
    return {
        "mrseg_version": __version__,
        "preset": settings.preset,
        "seed": settings.seed,
        "settings": settings.to_dict(),
        "device": device,
        "machine": machine_facts(),
        "splits": {
            split: {"slides": [f["name"] for f in synth_facts(root, split)], "facts": synth_facts(root, split)}
            for split in settings.data_splits()
        },
        "panel_slide": panel,
        "models": models,
        "mimic_crop": mimic.get("crop", {}),
        "stages": [
            {"name": r.name, "seconds": r.seconds, "cpu_seconds": r.cpu_seconds, "reused": r.cached, "info": r.info}
            for r in records
        ],
        "eval": {"mpp": settings.eval_mpp, "within": "tissue", "positive": "label > 0"},
    }


__all__ = [
    "LESION_HEADERS",
    "build_results",
    "lesion_metrics",
    "lesion_rows",
    "machine_facts",
    "split_metrics",
    "synth_facts",
]
