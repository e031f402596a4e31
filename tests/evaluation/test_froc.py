"""Lesion-level FROC (CAMELYON16's rules) and slide-level AUC: hand-made cases, brute-force references, sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from froc_reference import reference_froc, reference_nms
from mrseg.core.errors import ConfigError
from mrseg.evaluation.detections import component_peaks, detect, nms_peaks, slide_score
from mrseg.evaluation.froc import Detections, froc_curve, lesion_mask, match_detections, sensitivity_at
from mrseg.evaluation.settings import FROC_FP_RATES, FROC_MPP, LesionSettings
from mrseg.evaluation.slide_level import slide_auc, slide_roc
from mrseg.wsi.geometry import ReadGrid

SLIDE_MPP = 1.0  # level-0 µm/px of the hand-made slides
PIXEL_UM = 5.0  # evaluation grid: 5 µm/px
SIZE = 140  # evaluation pixels a side (700 µm)
GRID = ReadGrid((0.0, 0.0, SIZE * PIXEL_UM, SIZE * PIXEL_UM), (SIZE, SIZE))


def centre_l0(col: int, row: int) -> tuple[float, float]:
    """Level-0 point of the centre of evaluation pixel (col, row)."""
    return ((col + 0.5) * PIXEL_UM, (row + 0.5) * PIXEL_UM)


def hand_made_tumour() -> np.ndarray:
    """Lesion A: a 300 x 300 µm square (rows/cols 10..69); lesion B: a 200 x 200 µm square (rows/cols
    82..121); an ITC: a 25 x 25 µm square at rows 100..104, cols 20..24."""
    tumour = np.zeros((SIZE, SIZE), bool)
    tumour[10:70, 10:70] = True
    tumour[82:122, 82:122] = True
    tumour[100:105, 20:25] = True
    return tumour


def test_evaluation_mask_margin_holes_and_itc() -> None:
    mask = lesion_mask(hand_made_tumour(), GRID, SLIDE_MPP)
    assert mask.n_regions == 3 and len(mask.itc) == 1
    a, itc = mask.labels[40, 40], mask.labels[102, 22]
    assert a > 0 and itc in mask.itc and a not in mask.itc
    # 37.5 µm margin: the centre of column 69 + 7 lies 35 µm from lesion A's last tumour centre, 69 + 8 lies 40 µm.
    assert mask.labels[40, 76] == a and mask.labels[40, 77] == 0
    # A ring's enclosed hole is filled.
    ring = np.zeros((SIZE, SIZE), bool)
    ring[20:100, 20:100] = True
    ring[40:80, 40:80] = False
    filled = lesion_mask(ring, GRID, SLIDE_MPP)
    assert filled.n_regions == 1 and filled.labels[60, 60] == 1
    # Diagonal neighbours are one region (8-connectivity) even without the margin.
    diagonal = np.zeros((SIZE, SIZE), bool)
    diagonal[50, 50] = diagonal[51, 51] = True
    assert lesion_mask(diagonal, GRID, SLIDE_MPP, distance_um=1.0, itc_um=1.0).n_regions == 1
    assert lesion_mask(np.zeros((SIZE, SIZE), bool), GRID, SLIDE_MPP).n_regions == 0


def test_hand_made_froc() -> None:
    mask = lesion_mask(hand_made_tumour(), GRID, SLIDE_MPP)
    points = [
        centre_l0(40, 40),  # lesion A, p 0.9
        centre_l0(30, 60),  # lesion A again, p 0.6: A is hit once, with 0.9
        centre_l0(22, 102),  # inside the ITC, p 0.95: ignored
        centre_l0(75, 95),  # 35 µm left of lesion B (its first tumour column is 82): a hit, p 0.7
        centre_l0(76, 40),  # 35 µm right of lesion A: a hit, p 0.65 (A keeps 0.9)
        centre_l0(77, 20),  # 40 µm right of lesion A: a false positive, p 0.8
    ]
    tumour_slide = match_detections(mask, Detections(np.asarray(points), [0.9, 0.6, 0.95, 0.7, 0.65, 0.8]))
    assert tumour_slide.lesion_scores.tolist() == [0.9, 0.7] and tumour_slide.fp_probs.tolist() == [0.8]
    assert tumour_slide.summary() == {
        "lesions": 2, "itc": 1, "detected": 2, "detections": 6, "fp": 1, "ignored_itc": 1,
    }  # fmt: skip
    normal_slide = match_detections(None, Detections(np.asarray([centre_l0(5, 5), centre_l0(50, 50)]), [0.85, 0.3]))
    assert normal_slide.n_lesions == 0 and normal_slide.fp_probs.tolist() == [0.85, 0.3]
    curve = froc_curve([tumour_slide, normal_slide])
    # By hand: thresholds 0.9, 0.85, 0.8, 0.7, 0.3 (the lesion scores and the FPs) -> (FP per slide, sensitivity):
    assert curve.fp_per_slide.tolist() == [0, 0, 0.5, 1.0, 1.0, 1.5]
    assert curve.sensitivity.tolist() == [0, 0.5, 0.5, 0.5, 1.0, 1.0]
    sens = [curve.sensitivity_at(r) for r in FROC_FP_RATES]
    assert sens == [0.5, 0.5, 1.0, 1.0, 1.0, 1.0]
    assert curve.score(FROC_FP_RATES) == pytest.approx(5 / 6)
    # The official script reads the curve with numpy.interp (its arrays reversed); the same values.
    assert sens == pytest.approx(np.interp(FROC_FP_RATES, curve.fp_per_slide, curve.sensitivity).tolist())


def test_interpolation_between_points_and_on_steps() -> None:
    fps = np.array([0.0, 0.0, 0.5, 0.5, 3.0])
    sens = np.array([0.0, 0.2, 0.3, 0.6, 0.9])
    for rate in (0.0, 0.1, 0.25, 0.5, 1.0, 2.9, 3.0, 8.0):
        assert sensitivity_at(fps, sens, rate) == pytest.approx(float(np.interp(rate, fps, sens)))
    empty = froc_curve([match_detections(None, Detections(np.zeros((0, 2)), []))])
    assert np.isnan(empty.sensitivity_at(1.0))


def test_every_detection_score_is_a_threshold() -> None:
    """Where every lesion is hit, the official sweep (``sorted(set(scores))[1:]``) would drop the lowest score."""
    mask = lesion_mask(hand_made_tumour()[:75], ReadGrid((0, 0, 700, 375), (140, 75)), SLIDE_MPP)
    assert mask.lesions == [1] and not mask.itc
    curve = froc_curve([match_detections(mask, Detections(np.asarray([centre_l0(40, 40)]), [0.4]))])
    assert curve.sensitivity_at(0.25) == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_froc_agrees_with_a_brute_force_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    slides: list[tuple[np.ndarray | None, np.ndarray, np.ndarray]] = []
    found = []
    grid = ReadGrid((0, 0, 48 * PIXEL_UM, 48 * PIXEL_UM), (48, 48))
    for slide in range(4):
        tumour = None
        if slide < 3:
            blobs = ndimage.gaussian_filter(rng.random((48, 48)), 3)
            tumour = blobs > np.quantile(blobs, 0.85)
        cells = rng.integers(0, 48, (12, 2))
        probs = np.round(rng.random(12), 2) + 0.01
        slides.append((tumour, cells, probs))
        mask = None if tumour is None else lesion_mask(tumour, grid, SLIDE_MPP)
        points = np.asarray([centre_l0(int(c), int(r)) for c, r in cells])
        found.append(match_detections(mask, Detections(points, probs)))
    curve = froc_curve(found)
    expected, n_lesions = reference_froc(slides, PIXEL_UM)
    assert curve.n_lesions == n_lesions > 0
    assert [curve.sensitivity_at(r) for r in FROC_FP_RATES] == pytest.approx(expected)


# ------------------------------------------------------------------------------------- detections


def test_nms_equals_the_repeated_maximum() -> None:
    rng = np.random.default_rng(3)
    prob = np.round(ndimage.gaussian_filter(rng.random((60, 80)), 2) * 2 - 0.4, 2).clip(0, 1)
    indices, probs = nms_peaks(prob, 0.3, 4)
    got = [(*divmod(int(i), 80), float(p)) for i, p in zip(indices, probs, strict=True)]
    assert got == reference_nms(prob, 0.3, 4) and len(got) > 3


def test_connected_components_and_level0_points() -> None:
    prob = np.zeros((10, 12))
    prob[1:4, 1:4] = 0.6
    prob[2, 3] = 0.9  # the first blob's maximum
    prob[6:9, 7:11] = 0.7  # a plateau: its first pixel in row-major order
    prob[5, 6] = 0.55  # diagonal to (6, 7): the same component
    indices, probs = component_peaks(prob, 0.5)
    assert [divmod(int(i), 12) for i in indices] == [(2, 3), (6, 7)] and probs.tolist() == [0.9, 0.7]
    grid = ReadGrid((0, 0, 120, 100), (12, 10))  # 10 level-0 px per pixel
    settings = LesionSettings(detection="components", detection_mpp=10.0)
    found = detect(prob, grid, 1.0, settings)
    assert found.rule == "components" and found.points_l0.tolist() == [[35.0, 25.0], [75.0, 65.0]]
    nms = detect(prob, grid, 1.0, LesionSettings(nms_radius_um=20.0, detection_mpp=10.0))
    assert nms.rule == "nms" and nms.probs.tolist() == [0.9, 0.7, 0.7]  # radius 2 px: the plateau gives two
    assert slide_score(prob, grid, 1.0, settings) == 0.9
    area = slide_score(prob, grid, 1.0, LesionSettings(slide_score="area", area_threshold=0.5))
    assert area == pytest.approx(22 * 100 / 1e6)  # 22 pixels of 10 x 10 µm


# ------------------------------------------------------------------------------------- slide level


def test_slide_auc_equals_sklearn() -> None:
    rng = np.random.default_rng(4)
    labels = rng.random(40) < 0.4
    scores = np.round(rng.random(40) + labels * 0.3, 1)  # rounded: many ties
    assert slide_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    fpr, tpr, thresholds = slide_roc(scores, labels)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1 and np.isinf(thresholds[0])
    assert float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)) == pytest.approx(roc_auc_score(labels, scores))
    assert np.isnan(slide_auc([0.1, 0.2], [True, True]))


def test_lesion_settings_defaults_and_checks() -> None:
    s = LesionSettings()
    assert s.mpp == pytest.approx(7.776) == FROC_MPP and s.distance_um == 37.5 and s.itc_um == 275.0
    assert s.nms_radius_um == pytest.approx(186.624) and s.fp_rates == (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    for changes, message in [
        ({"detection": "blobs"}, "detection must be one of 'nms', 'components'"),
        ({"threshold": 1.0}, r"threshold must be a probability in \[0, 1\)"),
        ({"mpp": 0}, "lesion mpp must be a positive number"),
        ({"fp_rates": ()}, "fp_rates needs at least one"),
        ({"slide_score": "mean"}, "slide score must be one of"),
    ]:
        with pytest.raises(ConfigError, match=message):
            LesionSettings(**changes)  # type: ignore[arg-type]
