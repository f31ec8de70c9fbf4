"""The release check: everything the gate needs beyond TFMA's value/change thresholds.

On the eval split it scores the candidate and the baseline through `serving_images`, then
  * calibration: the decision threshold for `thresholds.target_fpr` on real images, TPR there and
    at 0.5 (both models; the candidate's goes into the registry with the model);
  * robustness: the candidate on the eval split re-compressed as JPEG q95/q75/q50, downscaled by 0.5
    and blurred (sigma 1); accuracy (at 0.5, as TFMA's binary_accuracy) must not drop by more than
    `thresholds.max_robustness_drop` under any of them;
  * the final blessing: TFMA's verdict AND the robustness limit, with readable reasons.

`run_release_check` is a plain function (tests call it directly); `ReleaseCheck` wraps it as a TFX
component whose `blessing` output gates the registry push.
"""
from __future__ import annotations

import json
import logging
import os
import time

import numpy as np
import tensorflow as tf

from components.evaluator import calibration as cal
from components.evaluator import results as tfma_results
from components.evaluator.eval_config import BASELINE, CANDIDATE
from components.release_check.perturb import PERTURBATIONS
from components.scoring.examples import read_split
from components.scoring.scorer import Scorer

CHECK_FILE = "release_check.json"
SCORES_FILE = "scores.json"
log = logging.getLogger("synthdetect.release_check")


def robustness(labels: np.ndarray, clean: np.ndarray, perturbed: dict[str, np.ndarray], threshold: float,
               max_drop: float) -> dict:
    """Accuracy at 0.5 and at the calibrated threshold, AUC and the drop vs clean, per perturbation."""
    def row(scores: np.ndarray) -> dict:
        at_t = cal.rates(labels, scores, threshold)
        return {"accuracy": cal.rates(labels, scores, 0.5)["accuracy"], "accuracy_at_threshold": at_t["accuracy"],
                "tpr_at_threshold": at_t["tpr"], "fpr_at_threshold": at_t["fpr"],
                "auc": cal.roc_curve(labels, scores)["auc"]}
    base = row(clean)
    rows = {}
    for name, scores in perturbed.items():
        r = row(scores)
        r["accuracy_drop"] = base["accuracy"] - r["accuracy"]
        r["passed"] = bool(r["accuracy_drop"] <= max_drop + 1e-12)
        rows[name] = r
    worst = max(rows, key=lambda n: rows[n]["accuracy_drop"]) if rows else None
    return {"clean": base, "perturbations": rows, "max_allowed_drop": max_drop, "worst": worst,
            "max_drop": rows[worst]["accuracy_drop"] if worst else 0.0,
            "passed": all(r["passed"] for r in rows.values())}


def gate(tfma: tfma_results.TfmaResult, tfma_blessed: bool, robust: dict, thresholds: dict) -> tuple[bool, list[str]]:
    """Final verdict and its reasons (failures when not blessed, the checks passed when blessed)."""
    failures, passed = [], []
    if tfma.validation_ok is None:
        failures.append("no TFMA validation result (the Evaluator did not validate)")
    elif not (tfma_blessed and tfma.validation_ok):
        failures += tfma.failures or ["TFMA did not bless the candidate"]
    else:
        passed += tfma_results.passed_text(tfma.metrics, thresholds)
    for name, r in robust["perturbations"].items():
        text = (f"accuracy drop under {name} = {r['accuracy_drop']:+.3f} "
                f"{'<=' if r['passed'] else '>'} {robust['max_allowed_drop']:g}")
        (passed if r["passed"] else failures).append(text)
    if failures:
        return False, failures
    return True, passed


def run_release_check(examples_uri: str, candidate_dir: str, baseline_dir: str, evaluation_uri: str,
                      tfma_blessed: bool, thresholds: dict, out_dir: str, batch_size: int = 32) -> dict:
    """Scores, calibrates, perturbs, decides; writes release_check.json and scores.json to out_dir."""
    t0 = time.time()
    images, labels, meta = read_split(examples_uri, "eval")
    if not images:
        raise ValueError(f"the eval split of {examples_uri} is empty")
    log.info("release check: %d eval examples", len(images))
    scores: dict[str, dict[str, list[float]]] = {CANDIDATE: {}, BASELINE: {}}
    cand, base = Scorer(candidate_dir), Scorer(baseline_dir)
    clean = {CANDIDATE: cand.score_batched(images, batch_size), BASELINE: base.score_batched(images, batch_size)}
    perturbed = {}
    for name, fn in PERTURBATIONS.items():
        perturbed[name] = cand.score_batched([fn(b) for b in images], batch_size)
        log.info("release check: scored %s (%.0fs)", name, time.time() - t0)

    calib = {m: cal.calibrate(labels, clean[m], thresholds["target_fpr"]) for m in (CANDIDATE, BASELINE)}
    robust = robustness(labels, clean[CANDIDATE], perturbed, calib[CANDIDATE]["threshold"],
                        thresholds["max_robustness_drop"])
    tfma = tfma_results.load(evaluation_uri)
    blessed, reasons = gate(tfma, tfma_blessed, robust, thresholds)
    result = {
        "blessed": blessed, "reasons": reasons, "thresholds": thresholds,
        "tfma": {"validation_ok": tfma.validation_ok, "blessed": bool(tfma_blessed), "failures": tfma.failures,
                 "metrics": tfma.metrics, "slices": tfma.slices},
        "calibration": calib, "robustness": robust,
        "classification": {m: {"at_0.5": cal.classification_report(labels, clean[m], 0.5),
                               "at_threshold": cal.classification_report(labels, clean[m], calib[m]["threshold"])}
                           for m in (CANDIDATE, BASELINE)},
        "roc": {m: cal.roc_curve(labels, clean[m]) for m in (CANDIDATE, BASELINE)},
        "reliability": {m: cal.reliability(labels, clean[m]) for m in (CANDIDATE, BASELINE)},
        "n_examples": len(images), "seconds": round(time.time() - t0, 1),
    }
    scores[CANDIDATE] = {"clean": clean[CANDIDATE].tolist(), **{k: v.tolist() for k, v in perturbed.items()}}
    scores[BASELINE] = {"clean": clean[BASELINE].tolist()}
    tf.io.gfile.makedirs(out_dir)  # artifact IO through gfile: local paths and gs:// alike
    with tf.io.gfile.GFile(os.path.join(out_dir, CHECK_FILE), "w") as f:
        json.dump(cal.json_safe(result), f, indent=2, allow_nan=False)
    with tf.io.gfile.GFile(os.path.join(out_dir, SCORES_FILE), "w") as f:
        json.dump(cal.json_safe({"labels": labels.tolist(), "examples": meta, "scores": scores}), f)
    return cal.json_safe(result)


# -- reading a ReleaseCheck `check` artifact back (report, curate, the registry pusher)
def _load(uri: str, name: str) -> dict | None:
    path = os.path.join(uri, name)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def load_check(uri: str) -> dict | None:
    """release_check.json (verdict, reasons, calibration, robustness, TFMA metrics), or None."""
    return _load(uri, CHECK_FILE)


def load_scores(uri: str) -> dict | None:
    """scores.json: labels, example metadata and every score behind the check, or None."""
    return _load(uri, SCORES_FILE)


def calibrated_threshold(check: dict | None, model: str = CANDIDATE) -> float | None:
    """A model's calibrated decision threshold from a loaded check (None if absent or unusable)."""
    try:
        value = check["calibration"][model]["threshold"] if check else None
        return float(value) if value is not None else None
    except (KeyError, TypeError, ValueError):
        return None
