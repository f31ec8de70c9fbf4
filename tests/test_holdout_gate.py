"""The held-out figures and gate of ReleaseCheck (issue 14) on known scores: what a single-label set is
measured against, the gap, per-set thresholds, an emptied set."""
import numpy as np
import pytest

from components.release_check.check import holdout_figures, holdout_gate

EVAL_Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
EVAL_P = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])   # AUC 1.0


def fig(labels, scores, threshold=0.5):
    f = holdout_figures(np.asarray(labels), np.asarray(scores, float), EVAL_Y, EVAL_P, threshold, 0.25)
    f["eval_auc"] = 1.0
    f["gap"] = None if f["auc"] is None else 1.0 - f["auc"]
    return f


def test_two_label_set_is_measured_on_its_own():
    f = fig([0, 0, 1, 1], [0.2, 0.6, 0.4, 0.8])        # one inverted pair of four: AUC 0.75
    assert f["basis"] == "held-out set" and f["auc"] == pytest.approx(0.75) and f["gap"] == pytest.approx(0.25)
    assert f["accuracy"] == pytest.approx(0.5) and (f["n_real"], f["n_synthesized"]) == (2, 2)
    assert f["at_threshold"]["tpr"] == pytest.approx(0.5) and f["at_threshold"]["fpr"] == pytest.approx(0.5)


def test_synthesized_only_set_is_ranked_against_the_eval_real_images():
    # scores 0.35 and 0.05: above 3 and 0 of the 4 eval real scores -> AUC (3 + 0) / 8
    f = fig([1, 1], [0.35, 0.05])
    assert f["basis"] == "held-out synthesized vs eval real" and f["auc"] == pytest.approx(3 / 8)
    assert f["accuracy"] == 0.0 and f["at_threshold"]["tpr"] == 0.0 and f["at_threshold"]["fpr"] is not None
    assert f["tpr_at_target_fpr"] == pytest.approx(0.5)  # FPR <= 0.25 of 4 real: one may pass (0.4 > 0.35)
    assert fig([1, 1], [0.95, 0.99])["auc"] == pytest.approx(1.0)


def test_real_only_set_is_ranked_against_the_eval_synthesized_images():
    f = fig([0, 0], [0.65, 0.1])        # 0.65 outranks 1 of 4 eval synthesized -> AUC (3 + 4) / 8
    assert f["basis"] == "eval synthesized vs held-out real" and f["auc"] == pytest.approx(7 / 8)


def test_gate_names_the_failing_set_and_takes_per_set_thresholds():
    holdout = {"near": {"candidate": fig([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])},    # AUC 1.0
               "far": {"candidate": fig([1, 1], [0.35, 0.05])}}                   # AUC 0.375
    failures, passed = holdout_gate(holdout, {"min_holdout_auc": 0.7, "max_generalisation_gap": 0.2})
    assert failures == ["held-out set far: auc = 0.375 < 0.7 (held-out synthesized vs eval real)",
                        "held-out set far: generalisation gap = +0.625 > 0.2 (eval auc 1.000 - held-out auc 0.375)"]
    assert len(passed) == 2 and all(p.startswith("held-out set near:") for p in passed)
    failures, _ = holdout_gate(holdout, {"min_holdout_auc": {"far": 0.3}, "max_generalisation_gap": None})
    assert failures == []                                                  # only far is bounded, and it clears 0.3
    assert holdout_gate(holdout, {"min_holdout_auc": None, "max_generalisation_gap": None}) == ([], [])


def test_an_emptied_set_has_no_figures_and_fails_a_gate_that_applies():
    f = fig([], [])
    assert f["basis"] == "empty" and f["auc"] is None and f["n_examples"] == 0
    failures, _ = holdout_gate({"gone": {"candidate": f}}, {"min_holdout_auc": 0.5, "max_generalisation_gap": None})
    assert failures and failures[0].startswith("held-out set gone: no AUC (0 examples")
    no_limits = {"min_holdout_auc": None, "max_generalisation_gap": None}
    assert holdout_gate({"gone": {"candidate": f}}, no_limits) == ([], [])
