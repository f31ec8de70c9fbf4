"""Calibration and the per-example metrics behind the report (numpy, no model)."""
import numpy as np
import pytest

from components.evaluator import calibration as cal


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("target", [0.01, 0.05, 0.2])
def test_calibrated_threshold_meets_the_target_fpr_with_the_best_tpr(seed, target):
    rng = np.random.default_rng(seed)
    n_real, n_syn = rng.integers(5, 200, size=2)
    y = np.r_[np.zeros(n_real, int), np.ones(n_syn, int)]
    p = np.round(np.r_[rng.beta(2, 5, n_real), rng.beta(5, 2, n_syn)], 2)  # rounding makes ties
    c = cal.calibrate(y, p, target)
    assert c["fpr"] <= target + 1e-12
    # no threshold with an FPR within the target has a higher TPR
    best = max(cal.rates(y, p, t)["tpr"] for t in np.r_[np.unique(p), 1.01] if cal.rates(y, p, t)["fpr"] <= target)
    assert c["tpr"] == pytest.approx(best)


def test_threshold_sits_in_the_gap_between_the_classes():
    y, p = [0, 0, 0, 1, 1, 1], [0.01, 0.02, 0.03, 0.91, 0.95, 0.99]
    assert cal.threshold_for_fpr(y, p, 0.05) == pytest.approx(0.47)
    with pytest.raises(ValueError, match="no real images"):
        cal.threshold_for_fpr([1, 1], [0.2, 0.3], 0.05)


def test_roc_auc_is_the_mann_whitney_probability():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.round(rng.random(300) * 0.5 + y * 0.3, 2)
    pos, neg = p[y == 1], p[y == 0]
    mw = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    roc = cal.roc_curve(y, p)
    assert roc["auc"] == pytest.approx(mw)
    assert roc["fpr"][0] == roc["tpr"][0] == 0 and roc["fpr"][-1] == roc["tpr"][-1] == 1


def test_classification_report_reproduces_the_papers_table_2_from_table_1():
    # the paper's custom model, Table 1: TN 4008, FP 92, FN 152, TP 3848
    y = np.r_[np.zeros(4100, int), np.ones(4000, int)]
    p = np.r_[np.zeros(4008), np.ones(92), np.zeros(152), np.ones(3848)]
    r = cal.classification_report(y, p, 0.5)
    assert r["confusion"] == {"tn": 4008, "fp": 92, "fn": 152, "tp": 3848}
    assert round(r["accuracy"], 2) == 0.97
    assert round(r["positive"]["f1"], 2) == round(r["negative"]["f1"], 2) == 0.97
    assert {round(r["positive"]["precision"], 2), round(r["negative"]["precision"], 2)} == {0.96, 0.98}
