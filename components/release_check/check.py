"""The release check: everything the gate needs beyond TFMA's value/change thresholds.

On the eval split it scores the candidate and the baseline through `serving_images`, then
  * calibration: the decision threshold for `thresholds.target_fpr` on real images, TPR there and
    at 0.5 (both models; the candidate's goes into the registry with the model);
  * robustness: the candidate on the eval split re-compressed as JPEG q95/q75/q50, downscaled by 0.5
    and blurred (sigma 1); accuracy (at 0.5, as TFMA's binary_accuracy) must not drop by more than
    `thresholds.max_robustness_drop` under any of them;
  * held-out sets (`evaluation.holdout_sets`, `leave_out`): both models scored on every split
    `holdout_<name>`; AUC, accuracy, TPR at the target FPR and the generalisation gap (eval AUC minus
    held-out AUC) per set, see `holdout_figures`; gated by `thresholds.min_holdout_auc` and
    `thresholds.max_generalisation_gap`;
  * the final blessing: TFMA's verdict AND robustness AND the held-out gate, with readable reasons.

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
from components.evaluator.names import BASELINE, CANDIDATE, PRODUCTION
from components.ingest import outputs
from components.ingest.plan import holdout_split
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


def holdout_figures(labels: np.ndarray, scores: np.ndarray, eval_labels: np.ndarray, eval_scores: np.ndarray,
                    threshold: float, target_fpr: float) -> dict:
    """What one model achieves on one held-out set.

    A set with both labels is measured on its own. A single-label set (leave out one generator:
    all synthesized) has no AUC of its own, so its images are ranked against the eval split's
    images of the other label: held-out synthesized vs eval real (or eval synthesized vs held-out
    real). That AUC answers the deployment question: are the unseen images told apart from the data
    the model was validated on? `basis` says which was measured.
      auc, roc             on that basis
      tpr_at_target_fpr    TPR where FPR <= target_fpr on the basis' real images (for a set of
                           synthesized images only: the eval real images, i.e. the calibrated threshold)
      accuracy             at 0.5, on the held-out images alone
      at_threshold         accuracy, TPR, FPR of the held-out images at the release threshold
                           (calibrated on the eval split), what a user of the model would see
      gap                  filled in by the caller: in-distribution AUC minus this AUC
    """
    n_pos, n_neg = int(np.sum(labels == 1)), int(np.sum(labels == 0))
    out = {"n_examples": int(labels.size), "n_synthesized": n_pos, "n_real": n_neg}
    if not labels.size:
        return {**out, "basis": "empty", "auc": None, "roc": None, "tpr_at_target_fpr": None, "accuracy": None,
                "at_threshold": None}
    if n_pos and n_neg:
        basis, y, p = "held-out set", labels, scores
    elif n_pos:
        basis = "held-out synthesized vs eval real"
        y = np.r_[np.ones(n_pos, np.int64), np.zeros(int(np.sum(eval_labels == 0)), np.int64)]
        p = np.r_[scores, eval_scores[eval_labels == 0]]
    else:
        basis = "eval synthesized vs held-out real"
        y = np.r_[np.ones(int(np.sum(eval_labels == 1)), np.int64), np.zeros(n_neg, np.int64)]
        p = np.r_[eval_scores[eval_labels == 1], scores]
    roc = cal.roc_curve(y, p)
    at_target = cal.calibrate(y, p, target_fpr) if np.any(y == 0) else None
    at_t = cal.rates(labels, scores, threshold)
    return {**out, "basis": basis, "auc": roc["auc"], "roc": roc,
            "tpr_at_target_fpr": at_target["tpr"] if at_target else None,
            "fpr_at_target_fpr": at_target["fpr"] if at_target else None,
            "accuracy": cal.rates(labels, scores, 0.5)["accuracy"],
            "at_threshold": {k: at_t[k] for k in ("threshold", "accuracy", "tpr", "fpr")}}


def holdout_gate(holdout: dict, thresholds: dict) -> tuple[list[str], list[str]]:
    """(failures, passed) of the candidate on every held-out set, each naming its set."""
    failures: list[str] = []
    passed: list[str] = []
    min_auc, max_gap = thresholds.get("min_holdout_auc"), thresholds.get("max_generalisation_gap")
    for name, figures in holdout.items():
        r = figures[CANDIDATE]
        bound = min_auc.get(name) if isinstance(min_auc, dict) else min_auc
        if (bound is not None or max_gap is not None) and r["auc"] is None:
            failures.append(f"held-out set {name}: no AUC ({r['n_examples']} examples after removing leaks; "
                            f"basis {r['basis']})")
            continue
        if bound is not None:
            ok = r["auc"] >= bound - 1e-12
            (passed if ok else failures).append(
                f"held-out set {name}: auc = {r['auc']:.3f} {'>=' if ok else '<'} {bound:g} ({r['basis']})")
        if max_gap is not None:
            ok = r["gap"] <= max_gap + 1e-12
            (passed if ok else failures).append(
                f"held-out set {name}: generalisation gap = {r['gap']:+.3f} {'<=' if ok else '>'} {max_gap:g} "
                f"(eval auc {r['eval_auc']:.3f} - held-out auc {r['auc']:.3f})")
    return failures, passed


def missing_classes(labels: np.ndarray) -> list[str]:
    """Why the eval split cannot judge a detector: a class it holds no image of (TPR, FPR, AUC and
    the calibration are undefined without both)."""
    labels = np.asarray(labels)
    return [f"no {name} image in the eval split: {what} undefined (n/a); the eval split needs both labels"
            for name, value, what in (("synthesized", 1, "TPR, AUC and the calibrated TPR are"),
                                      ("real", 0, "FPR, AUC and the calibrated threshold are"))
            if not np.any(labels == value)]


def gate(tfma: tfma_results.TfmaResult, tfma_blessed: bool, robust: dict, thresholds: dict,
         holdout: dict | None = None, labels: np.ndarray | None = None) -> tuple[bool, list[str]]:
    """Final verdict and its reasons (failures when not blessed, the checks passed when blessed).
    `labels` (the eval split's): a split without both classes is refused whatever TFMA said."""
    failures, passed = [], []
    if labels is not None:
        failures += missing_classes(labels)
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
    held_failures, held_passed = holdout_gate(holdout or {}, thresholds)
    failures += held_failures
    passed += held_passed
    if failures:
        return False, failures
    return True, passed


def production_gate(production: dict | None, thresholds: dict) -> tuple[list[str], list[str]]:
    """(failures, passed) of the candidate against the production model: TFMA's change thresholds on
    the eval split (`min_accuracy_gain_over_production`, `min_auc_gain_over_production`, decided by the
    ProductionEvaluator) and the held-out AUC gain (`min_holdout_auc_gain_over_production`, every
    held-out set both were scored on). Each reason names the metric and production's version:
    `auc = 0.941 < production v3 0.952 (min gain +0)`."""
    if not production or not production.get("compared"):
        return [], []
    version = production["version"]
    failures: list[str] = []
    passed: list[str] = []
    cand, prod = production["metrics"].get(CANDIDATE, {}), production["metrics"].get(PRODUCTION, {})
    for name, key in (("binary_accuracy", "min_accuracy_gain_over_production"),
                      ("auc", "min_auc_gain_over_production")):
        if name not in cand or name not in prod:
            failures.append(f"{name}: no figure for the {'candidate' if name not in cand else 'production model'} "
                            f"in the comparison with production {version}")
            continue
        gain, bound = cand[name] - prod[name], thresholds.get(key, 0.0)
        ok = gain >= bound - 1e-9
        (passed if ok else failures).append(
            f"{name} = {cand[name]:.3f} {'>=' if ok else '<'} production {version} {prod[name]:.3f}"
            f" (min gain {bound:+g})")
    if production.get("validation_ok") is False and not failures:   # TFMA refused for another reason
        failures += production.get("failures") or [f"TFMA did not bless the candidate against production {version}"]
    bound = thresholds.get("min_holdout_auc_gain_over_production")
    for name, models in (production.get("holdout") or {}).items():
        c, p = models.get(CANDIDATE), models.get(PRODUCTION)
        if bound is None or c is None or p is None or c.get("auc") is None or p.get("auc") is None:
            continue
        ok = c["auc"] - p["auc"] >= bound - 1e-9
        (passed if ok else failures).append(
            f"held-out set {name}: auc = {c['auc']:.3f} {'>=' if ok else '<'} production {version} {p['auc']:.3f}"
            f" (min gain {bound:+g})")
    return failures, passed


def score_holdout_sets(examples_uri: str, names, scorers: dict, eval_labels: np.ndarray, eval_scores: dict,
                       calib: dict, target_fpr: float, batch_size: int) -> tuple[dict, dict]:
    """({set: {model: figures}}, {set: {"labels", "examples", "scores": {model: [...]}}}) for every
    held-out set; a set emptied by leak removal has no shards and gets empty figures."""
    eval_auc = {m: cal.roc_curve(eval_labels, eval_scores[m])["auc"] for m in scorers}
    figures: dict[str, dict] = {}
    raw: dict = {}
    for name in names:
        split = holdout_split(name)
        if outputs.shards(examples_uri, split):
            images, labels, meta = read_split(examples_uri, split)
        else:
            images, labels, meta = [], np.zeros([0], np.int64), []
        scores = {m: s.score_batched(images, batch_size) for m, s in scorers.items()}
        figures[name] = {}
        for m in scorers:
            f = holdout_figures(labels, scores[m], eval_labels, eval_scores[m], calib[m]["threshold"], target_fpr)
            f["eval_auc"] = eval_auc[m]
            f["gap"] = eval_auc[m] - f["auc"] if f["auc"] is not None and eval_auc[m] == eval_auc[m] else None
            figures[name][m] = f
        raw[name] = {"labels": labels.tolist(), "examples": meta, "scores": {m: v.tolist() for m, v in scores.items()}}
        log.info("release check: held-out set %s, %d examples", name, len(images))
    return figures, raw


def run_release_check(examples_uri: str, candidate_dir: str, baseline_dir: str, evaluation_uri: str,
                      tfma_blessed: bool, thresholds: dict, out_dir: str, batch_size: int = 32,
                      holdout_sets=(), production: dict | None = None) -> dict:
    """Scores, calibrates, perturbs, decides; writes release_check.json and scores.json to out_dir.

    `production`: the model serving now, {"version", "model_dir", "evaluation_uri", "tfma_blessed",
    "registry"} (the ProductionModel and ProductionEvaluator outputs), or None / {"version": None}
    when the registry had none: then the comparison is skipped and the check says so."""
    t0 = time.time()
    images, labels, meta = read_split(examples_uri, "eval")
    if not images:
        raise ValueError(f"the eval split of {examples_uri} is empty")
    log.info("release check: %d eval examples", len(images))
    scores: dict[str, dict[str, list[float]]] = {CANDIDATE: {}, BASELINE: {}}
    cand, base = Scorer(candidate_dir), Scorer(baseline_dir)
    scorers = {CANDIDATE: cand, BASELINE: base}
    compared = bool(production and production.get("version"))
    if compared:
        assert production is not None
        scorers[PRODUCTION] = Scorer(production["model_dir"])   # decodes at its own input size
    clean = {m: s.score_batched(images, batch_size) for m, s in scorers.items()}
    perturbed = {}
    for name, fn in PERTURBATIONS.items():
        perturbed[name] = cand.score_batched([fn(b) for b in images], batch_size)
        log.info("release check: scored %s (%.0fs)", name, time.time() - t0)

    calib = {m: cal.calibrate(labels, clean[m], thresholds["target_fpr"]) for m in scorers}
    robust = robustness(labels, clean[CANDIDATE], perturbed, calib[CANDIDATE]["threshold"],
                        thresholds["max_robustness_drop"])
    holdout, holdout_scores = score_holdout_sets(
        examples_uri, holdout_sets, scorers, labels, clean, calib, thresholds["target_fpr"], batch_size)
    tfma = tfma_results.load(evaluation_uri)
    blessed, reasons = gate(tfma, tfma_blessed, robust, thresholds, holdout, labels)
    comparison = production_comparison(production, holdout, clean, labels, calib)
    if blessed or compared:
        prod_failures, prod_passed = production_gate(comparison, thresholds)
        if prod_failures:
            reasons = (reasons if not blessed else []) + prod_failures
            blessed = False
        elif blessed:
            reasons = reasons + prod_passed
    if blessed and not compared:
        reasons = reasons + ["no production model yet: nothing to compare with (this version becomes the first)"]
    result = {
        "blessed": blessed, "reasons": reasons, "thresholds": thresholds,
        "tfma": {"validation_ok": tfma.validation_ok, "blessed": bool(tfma_blessed), "failures": tfma.failures,
                 "metrics": tfma.metrics, "slices": tfma.slices, "holdout": tfma.holdout},
        "calibration": calib, "robustness": robust, "holdout": holdout, "production": comparison,
        "classification": {m: {"at_0.5": cal.classification_report(labels, clean[m], 0.5),
                               "at_threshold": cal.classification_report(labels, clean[m], calib[m]["threshold"])}
                           for m in scorers},
        "roc": {m: cal.roc_curve(labels, clean[m]) for m in scorers},
        "reliability": {m: cal.reliability(labels, clean[m]) for m in scorers},
        "n_examples": len(images), "seconds": round(time.time() - t0, 1),
    }
    scores[CANDIDATE] = {"clean": clean[CANDIDATE].tolist(), **{k: v.tolist() for k, v in perturbed.items()}}
    scores[BASELINE] = {"clean": clean[BASELINE].tolist()}
    if compared:
        scores[PRODUCTION] = {"clean": clean[PRODUCTION].tolist()}
    tf.io.gfile.makedirs(out_dir)  # artifact IO through gfile: local paths and gs:// alike
    with tf.io.gfile.GFile(os.path.join(out_dir, CHECK_FILE), "w") as f:
        json.dump(cal.json_safe(result), f, indent=2, allow_nan=False)
    with tf.io.gfile.GFile(os.path.join(out_dir, SCORES_FILE), "w") as f:
        json.dump(cal.json_safe({"labels": labels.tolist(), "examples": meta, "scores": scores,
                                 "holdout": holdout_scores}), f)
    return cal.json_safe(result)


def production_comparison(production: dict | None, holdout: dict, clean: dict, labels: np.ndarray,
                          calib: dict) -> dict:
    """What the check records about the model serving now: {"compared": False} when there was none;
    else its version and registry, TFMA's candidate-vs-production metrics (eval split), its
    calibration and its held-out figures."""
    if not production or not production.get("version"):
        return {"compared": False, "registry": (production or {}).get("registry"),
                "reason": "no production model in the registry"}
    tfma = tfma_results.load(production["evaluation_uri"], models=(CANDIDATE, PRODUCTION))
    return {"compared": True, "version": production["version"], "registry": production.get("registry"),
            "validation_ok": tfma.validation_ok, "tfma_blessed": production.get("tfma_blessed"),
            "failures": tfma.failures, "metrics": tfma.metrics, "slices": tfma.slices,
            "calibration": calib.get(PRODUCTION), "auc": cal.roc_curve(labels, clean[PRODUCTION])["auc"],
            "holdout": {name: {m: figures[m] for m in (CANDIDATE, PRODUCTION) if m in figures}
                        for name, figures in holdout.items()}}


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


def holdout_summary(check: dict | None) -> dict:
    """{set: {model: figures}} of a loaded check without the ROC points (for model.json, reports);
    {} for a check without held-out sets (or from before them)."""
    return {name: {m: {k: v for k, v in f.items() if k != "roc"} for m, f in models.items()}
            for name, models in ((check or {}).get("holdout") or {}).items()}


def calibrated_threshold(check: dict | None, model: str = CANDIDATE) -> float | None:
    """A model's calibrated decision threshold from a loaded check (None if absent or unusable)."""
    try:
        value = check["calibration"][model]["threshold"] if check else None
        return float(value) if value is not None else None
    except (KeyError, TypeError, ValueError):
        return None
