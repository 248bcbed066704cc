"""MMSA regression metrics against values computed by hand on tiny arrays."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rohydr.core.metrics import LABELS, METRICS, score, weighted_f1

# labels with two zeros; one prediction exactly 0 for a positive label
Y_TRUE = np.array([0.0, 1.0, -1.0, 2.0, 0.0, 0.6])
Y_PRED = np.array([-0.5, 0.5, 0.5, 1.0, 0.3, 0.0])


def test_names_and_labels():
    assert METRICS == ("acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc5", "acc7", "mae", "corr")
    assert set(LABELS) == set(METRICS)
    assert LABELS["acc2_non0"] == "Acc-2 (non-0)" and LABELS["f1_non0"] == "F1 (non-0)"


def test_has0_counts_zero_labels_as_positive():
    got = score(Y_PRED, Y_TRUE)
    # label >= 0: T T F T T T ; pred >= 0: F T T T T T -> agree on samples 1, 3, 4, 5
    assert got["acc2_has0"] == pytest.approx(4 / 6)
    # class T: TP 4, 5 true, 5 predicted -> F1 0.8; class F: TP 0 -> 0; weights 5 and 1
    assert got["f1_has0"] == pytest.approx(0.8 * 5 / 6)


def test_non0_drops_zero_labels_and_splits_at_zero():
    got = score(Y_PRED, Y_TRUE)
    # kept: labels 1, -1, 2, 0.6 -> T F T T ; preds 0.5, 0.5, 1.0, 0.0 -> T T T F (0.0 is not > 0)
    assert got["acc2_non0"] == pytest.approx(2 / 4)
    # class T: TP 2, 3 true, 3 predicted -> 4/6 ; class F: TP 0 -> 0 ; weights 3 and 1
    assert got["f1_non0"] == pytest.approx((4 / 6) * 3 / 4)


def test_mae_and_correlation():
    got = score(Y_PRED, Y_TRUE)
    assert got["mae"] == pytest.approx((0.5 + 0.5 + 1.5 + 1.0 + 0.3 + 0.6) / 6)
    assert got["corr"] == pytest.approx(np.corrcoef(Y_PRED, Y_TRUE)[0, 1])


def test_f1_takes_truth_first():
    truth, pred = np.array([1, 1, 1, 0], bool), np.array([1, 1, 0, 0], bool)
    # F1(True) = 4/5, F1(False) = 2/3; weights by true support 3:1, swapped 2:2
    assert weighted_f1(truth, pred) == pytest.approx((0.8 * 3 + (2 / 3) * 1) / 4)
    assert weighted_f1(pred, truth) == pytest.approx((0.8 + 2 / 3) / 2)
    y_true = np.array([1.0, 2.0, 0.5, -1.0])
    y_pred = np.array([1.0, 2.0, -0.5, -1.0])
    assert score(y_pred, y_true)["f1_non0"] == pytest.approx(0.8 * 3 / 4 + (2 / 3) / 4)
    assert score(y_pred, y_true)["f1_non0"] != pytest.approx(score(y_true, y_pred)["f1_non0"])


def test_acc5_and_acc7_clip_then_round():
    y_true = np.array([3.0, -2.6, 0.4, 1.5])
    y_pred = np.array([2.4, -3.5, -0.4, 2.5])
    got = score(y_pred, y_true)
    # Acc-5 clips to [-2, 2]: 2|2, -2|-2, -0|0, 2|2 (2.5 -> 2 and 1.5 -> 2: halves to even) -> 4/4
    assert got["acc5"] == pytest.approx(1.0)
    # Acc-7 clips to [-3, 3]: 2|3, -3|-3, -0|0, 2|2 -> 3/4
    assert got["acc7"] == pytest.approx(0.75)


def test_torch_inputs_and_shapes():
    expected = score(Y_PRED, Y_TRUE)
    got = score(torch.tensor(Y_PRED, dtype=torch.float32).view(-1, 1), torch.tensor(Y_TRUE))
    for name in METRICS:
        assert got[name] == pytest.approx(expected[name], abs=1e-6), name
    with pytest.raises(ValueError):
        score(Y_PRED, Y_TRUE[:-1])


def test_constant_predictions_have_zero_correlation():
    got = score(np.full(4, 0.7), np.array([1.0, -1.0, 2.0, 0.0]))
    assert got["corr"] == 0.0
    assert got["acc2_non0"] == pytest.approx(2 / 3)
    assert all(isinstance(value, float) for value in got.values())


def test_all_zero_labels_leave_non0_undefined():
    got = score(np.array([0.2, -0.3]), np.zeros(2))
    assert math.isnan(got["acc2_non0"]) and math.isnan(got["f1_non0"])
    assert got["acc2_has0"] == pytest.approx(0.5)
