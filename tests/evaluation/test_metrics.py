"""Streaming histogram metrics and confusion matrices against scikit-learn and hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mrseg.core.encoding import FLOAT16, UINT8
from mrseg.evaluation.metrics import BinaryHistogram, ClassMetrics, ConfusionMatrix, mask_scores


def test_streaming_auc_matches_sklearn_on_uint8_maps() -> None:
    rng = np.random.default_rng(0)
    truth = rng.random(200_000) < 0.3
    values = np.clip(rng.normal(100 + 60 * truth, 50), 0, 255).astype(np.uint8)
    hist = BinaryHistogram(1024)
    for part in np.array_split(np.arange(truth.size), 7):  # streamed in uneven chunks
        hist.update_uint8(values[part], truth[part])
    expected = roc_auc_score(truth, values / 255.0)
    assert hist.auc() == pytest.approx(expected, abs=1e-9)  # 256 levels fall in distinct bins: exact


def test_streaming_auc_matches_sklearn_on_float_probabilities_within_1e3() -> None:
    rng = np.random.default_rng(1)
    truth = rng.random(100_000) < 0.2
    prob = 1 / (1 + np.exp(-rng.normal(1.2 * truth - 0.5, 1.0)))
    hist = BinaryHistogram(1024)
    hist.update(prob[:50_000], truth[:50_000])
    hist.update(prob[50_000:], truth[50_000:])
    assert abs(hist.auc() - roc_auc_score(truth, prob)) < 1e-3
    fpr, tpr, thr = hist.roc()
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and np.all(np.diff(thr) <= 0)


def test_valid_mask_and_merging_histograms() -> None:
    rng = np.random.default_rng(2)
    prob, truth = rng.random(1000), rng.random(1000) < 0.5
    valid = rng.random(1000) < 0.6
    a, b = BinaryHistogram(64), BinaryHistogram(64)
    a.update(prob[:500], truth[:500], valid[:500])
    b.update(prob[500:], truth[500:], valid[500:])
    a += b
    c = BinaryHistogram(64)
    c.update(prob[valid], truth[valid])
    np.testing.assert_array_equal(a.pos, c.pos)
    assert a.n_pos + a.n_neg == valid.sum()
    assert BinaryHistogram.from_dict(a.to_dict()).auc() == a.auc()


def test_threshold_metrics_on_a_hand_made_mask() -> None:
    truth = np.zeros((10, 10), bool)
    truth[2:6, 2:6] = True  # 16 positive pixels
    prob = np.zeros((10, 10))
    prob[3:7, 3:7] = 0.8  # 9 overlap the truth, 7 do not
    hist = BinaryHistogram(1024)
    hist.update(prob, truth)
    at = hist.at_threshold(0.5)
    assert (at["tp"], at["fp"], at["fn"], at["tn"]) == (9, 7, 7, 77)
    assert at["dice"] == pytest.approx(2 * 9 / (2 * 9 + 7 + 7))
    assert at["iou"] == pytest.approx(9 / 23)
    assert at["precision"] == pytest.approx(9 / 16) and at["recall"] == pytest.approx(9 / 16)
    assert at["accuracy"] == pytest.approx(86 / 100)
    assert mask_scores(prob >= 0.5, truth) | {} == {k: v for k, v in at.items() if k != "threshold"}
    # threshold above 0.8 predicts nothing: Dice 0; best Dice is at a threshold <= 0.8
    assert hist.at_threshold(0.9)["dice"] == 0
    assert 0 < hist.best_dice_threshold() <= 0.8
    summary = hist.summary()
    assert summary["best_dice"]["dice"] >= summary["at"]["0.5"]["dice"]


def test_perfect_and_degenerate_cases() -> None:
    s = mask_scores(np.ones((3, 3)), np.ones((3, 3)))
    assert s["dice"] == s["iou"] == s["precision"] == s["recall"] == 1.0
    empty = mask_scores(np.zeros((3, 3)), np.zeros((3, 3)))
    assert np.isnan(empty["dice"]) and empty["accuracy"] == 1.0
    hist = BinaryHistogram(16)
    hist.update(np.array([0.1, 0.2]), np.array([0, 0]))
    assert np.isnan(hist.auc())
    with pytest.raises(ValueError):
        mask_scores(np.ones(3), np.ones(4))


def test_update_encoded_is_update_uint8_or_decoded_update() -> None:
    rng = np.random.default_rng(3)
    values, truth = rng.integers(0, 256, 500).astype(np.uint8), rng.random(500) < 0.4
    a, b = BinaryHistogram(64), BinaryHistogram(64)
    a.update_encoded(values, UINT8, truth)
    b.update_uint8(values, truth)
    np.testing.assert_array_equal(a.pos, b.pos)
    probs = (values / 255).astype(np.float16)
    c, d = BinaryHistogram(64), BinaryHistogram(64)
    c.update_encoded(probs, FLOAT16, truth)
    d.update(probs.astype(np.float32), truth)
    np.testing.assert_array_equal(c.neg, d.neg)


def test_confusion_matrix_by_hand() -> None:
    truth = np.array([[0, 0, 1, 1], [2, 2, 2, 0]])
    pred = np.array([[0, 1, 1, 0], [2, 1, 2, 0]])
    cm = ConfusionMatrix(3)
    cm.update(truth, pred)
    assert cm.counts.tolist() == [[2, 1, 0], [1, 1, 0], [0, 1, 2]]
    assert cm.one_vs_rest(1) == (1, 2, 1, 4)  # tp, fp, fn, tn of class 1
    assert cm.scores(1)["dice"] == pytest.approx(2 / 5) and cm.scores(1)["iou"] == pytest.approx(1 / 4)
    assert cm.scores(2)["dice"] == pytest.approx(4 / 5) and cm.scores(2)["recall"] == pytest.approx(2 / 3)
    assert cm.accuracy() == pytest.approx(5 / 8)
    valid = np.array([[1, 1, 1, 1], [0, 0, 0, 0]], bool)
    masked = ConfusionMatrix(3)
    masked.update(truth, pred, valid)
    assert masked.counts.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
    cm += masked
    assert cm.total == 12
    with pytest.raises(ValueError, match=r"truth label 3 outside 0\.\.2"):
        cm.update(np.array([3]), np.array([0]))
    with pytest.raises(ValueError, match="different sizes"):
        cm += ConfusionMatrix(4)


def test_class_metrics_summary_and_macro_over_foreground() -> None:
    truth = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    pred = np.array([0, 0, 1, 1, 1, 2, 0, 2])
    stored = [np.where(pred == k, 204, 25).astype(np.uint8) for k in range(3)]
    metrics = ClassMetrics(("background", "a", "b"), bins=64)
    metrics.update([(v, UINT8) for v in stored], truth, pred)
    summary = metrics.summary()
    a, b = summary["classes"]["a"], summary["classes"]["b"]
    assert (a["tp"], a["fp"], a["fn"]) == (2, 1, 0) and a["dice"] == pytest.approx(4 / 5)
    assert (b["tp"], b["fp"], b["fn"]) == (2, 0, 1) and b["dice"] == pytest.approx(4 / 5)
    assert summary["macro"]["dice"] == pytest.approx(4 / 5)
    assert summary["macro"]["iou"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert a["auc"] == pytest.approx(roc_auc_score(truth == 1, stored[1] / 255))
    assert summary["confusion"] == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert summary["accuracy"] == pytest.approx(6 / 8)
    # a class absent from truth and prediction has undefined Dice and drops out of the macro mean
    absent = ClassMetrics(("background", "a", "b"), bins=64)
    absent.update([(v, UINT8) for v in stored], np.minimum(truth, 1), np.minimum(pred, 1))
    assert np.isnan(absent.summary()["classes"]["b"]["dice"])
    assert absent.summary()["macro"]["dice"] == absent.summary()["classes"]["a"]["dice"]
    metrics += absent
    assert metrics.confusion.total == 16 and metrics.histograms[1].n_pos == 2 + 5
    with pytest.raises(ValueError, match="2 probability maps for 3 classes"):
        metrics.update([(stored[0], UINT8), (stored[1], UINT8)], truth, pred)
