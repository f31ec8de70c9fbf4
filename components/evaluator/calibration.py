"""Decision-threshold calibration and per-example binary metrics (numpy only).

Label 1 = synthesized (positive), 0 = real. A score p >= threshold predicts "synthesized".
TFMA computes the gate's metrics; these functions work on the per-example scores the release check
records, for what TFMA cannot give: a threshold chosen for a target false-positive rate on real
images, TPR at that FPR, ROC points for the plots, the paper's classification reports.
"""
from __future__ import annotations

import math

import numpy as np


def _arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    p = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"{y.size} labels but {p.size} scores")
    return y, p


def rates(labels, scores, threshold: float) -> dict:
    """Confusion matrix and the usual rates at one threshold (predict synthesized iff p >= t)."""
    y, p = _arrays(labels, scores)
    pred = p >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    tn = int(np.sum(~pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))

    def div(a: float, b: float) -> float:
        return a / b if b else float("nan")
    return {"threshold": float(threshold), "tp": tp, "fp": fp, "tn": tn, "fn": fn,
            "tpr": div(tp, tp + fn), "fpr": div(fp, fp + tn), "accuracy": div(tp + tn, y.size)}


def classification_report(labels, scores, threshold: float = 0.5) -> dict:
    """Per-class precision / recall / F1 / support and accuracy, as in the paper's Table 2
    ("positive" = synthesized, "negative" = real)."""
    r = rates(labels, scores, threshold)

    def prf(tp: int, fp: int, fn: int) -> dict:
        prec = tp / (tp + fp) if tp + fp else float("nan")
        rec = tp / (tp + fn) if tp + fn else float("nan")
        f1 = 2 * prec * rec / (prec + rec) if prec + rec and not math.isnan(prec + rec) else float("nan")
        return {"precision": prec, "recall": rec, "f1": f1, "support": tp + fn}
    return {"threshold": float(threshold),
            "confusion": {"tn": r["tn"], "fp": r["fp"], "fn": r["fn"], "tp": r["tp"]},
            "positive": prf(r["tp"], r["fp"], r["fn"]),     # synthesized
            "negative": prf(r["tn"], r["fn"], r["fp"]),     # real
            "accuracy": r["accuracy"]}


def threshold_for_fpr(labels, scores, target_fpr: float) -> float:
    """A threshold whose false-positive rate on real images (label 0) is <= target_fpr, with the
    highest TPR possible at that FPR, placed with the largest margin the eval split allows.

    With n real images at most k = floor(target_fpr * n) of them may score >= t, so t must sit above
    the (k+1)-th highest real score `lo`. Every t in (lo, hi], hi = the lowest synthesized score
    above lo, gives the same FPR and TPR on the eval split; the midpoint is the least sensitive to
    small score shifts (ties can only lower the FPR below the target, never raise it)."""
    if not 0 < target_fpr < 1:
        raise ValueError(f"target_fpr must be in (0, 1), got {target_fpr}")
    y, p = _arrays(labels, scores)
    real = np.sort(p[y == 0])[::-1]
    if real.size == 0:
        raise ValueError("no real images (label 0) to calibrate on")
    k = int(math.floor(target_fpr * real.size + 1e-9))
    if k >= real.size:
        return 0.0
    lo = real[k]
    above = p[(y == 1) & (p > lo)]
    just_above = float(np.nextafter(lo, np.inf))
    t = just_above if above.size == 0 else max((lo + float(above.min())) / 2.0, just_above)
    return float(min(t, 1.0))


def calibrate(labels, scores, target_fpr: float) -> dict:
    """The calibrated threshold with TPR/FPR there and at 0.5 (what goes into model.json)."""
    y, p = _arrays(labels, scores)
    n_real = int(np.sum(y == 0))
    # no real image to calibrate on: 0.5, and FPR is undefined (the release check refuses such a split)
    t = threshold_for_fpr(y, p, target_fpr) if n_real else 0.5
    at_t, at_half = rates(y, p, t), rates(y, p, 0.5)
    return {"threshold": t, "target_fpr": float(target_fpr),
            "fpr": at_t["fpr"], "tpr": at_t["tpr"], "accuracy": at_t["accuracy"],
            "fpr_at_0.5": at_half["fpr"], "tpr_at_0.5": at_half["tpr"], "accuracy_at_0.5": at_half["accuracy"],
            "n_real": n_real, "n_synthesized": int(np.sum(y == 1)),
            # one real image moves the FPR by this much: the calibration's resolution
            "fpr_resolution": 1.0 / n_real if n_real else float("nan")}


def roc_curve(labels, scores) -> dict:
    """ROC points (fpr, tpr) at every distinct score, from (0, 0) to (1, 1), and the AUC
    (trapezoidal; equals the Mann-Whitney probability with ties counted half)."""
    y, p = _arrays(labels, scores)
    n_pos, n_neg = int(np.sum(y == 1)), int(np.sum(y == 0))
    order = np.argsort(-p, kind="mergesort")
    p, y = p[order], y[order]
    last_of_run = np.r_[np.nonzero(np.diff(p))[0], p.size - 1] if p.size else np.array([], dtype=int)
    tps = np.cumsum(y == 1)[last_of_run] if p.size else np.array([])
    fps = np.cumsum(y == 0)[last_of_run] if p.size else np.array([])
    tpr = np.r_[0.0, tps / n_pos] if n_pos else np.r_[0.0, np.zeros(len(tps))]
    fpr = np.r_[0.0, fps / n_neg] if n_neg else np.r_[0.0, np.zeros(len(fps))]
    auc = float(np.trapz(tpr, fpr)) if n_pos and n_neg else float("nan")
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": [math.inf] + p[last_of_run].tolist(),
            "auc": auc}


def reliability(labels, scores, bins: int = 10) -> dict:
    """Calibration plot data: per score bin, the mean score and the fraction actually synthesized."""
    y, p = _arrays(labels, scores)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out = {"edges": edges.tolist(), "mean_score": [], "fraction_synthesized": [], "count": []}
    for b in range(bins):
        m = idx == b
        out["count"].append(int(m.sum()))
        out["mean_score"].append(float(p[m].mean()) if m.any() else float("nan"))
        out["fraction_synthesized"].append(float(y[m].mean()) if m.any() else float("nan"))
    return out


def json_safe(obj):
    """NaN/inf -> None and numpy scalars -> Python, recursively (strict JSON for model.json)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
