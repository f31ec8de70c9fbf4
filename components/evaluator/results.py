"""Reading a TFMA evaluation back: overall and per-slice metrics of both models, and the gate's
verdict as readable sentences (failures, or why it passed)."""
from __future__ import annotations

import dataclasses

from components.evaluator.eval_config import BASELINE, CANDIDATE

REPORT_METRICS = ("example_count", "binary_accuracy", "auc", "auc_pr", "precision", "recall", "f1_score")


@dataclasses.dataclass
class TfmaResult:
    metrics: dict[str, dict[str, float]]            # model -> metric -> value (overall slice)
    slices: dict[str, list[dict]]                   # model -> [{"slice": "source=x", metric: value}]
    validation_ok: bool | None                      # None: no validation result
    failures: list[str]


def _value(v) -> float | None:
    if isinstance(v, dict):
        for key in ("doubleValue", "double_value"):
            if key in v:
                return float(v[key])
    return None


def _slice_name(slice_key) -> str:
    return ",".join(f"{k}={v.decode() if isinstance(v, bytes) else v}" for k, v in slice_key) or "overall"


def load(uri: str) -> TfmaResult:
    """Everything the report and the release gate need from an Evaluator `evaluation` artifact."""
    import tensorflow_model_analysis as tfma

    out = TfmaResult(metrics={}, slices={}, validation_ok=None, failures=[])
    for model in (CANDIDATE, BASELINE):
        try:
            result = tfma.load_eval_result(uri, model_name=model)
        except Exception:  # noqa: BLE001 - a failed evaluator leaves no metrics; reported as missing
            continue
        rows = []
        for slice_key, metrics in result.slicing_metrics:
            values = metrics.get("", {}).get("", {})
            row = {k: x for k, x in ((k, _value(v)) for k, v in values.items()) if k in REPORT_METRICS and x is not None}
            if slice_key == ():
                out.metrics[model] = row
            rows.append({"slice": _slice_name(slice_key), **row})
        out.slices[model] = sorted(rows, key=lambda r: (r["slice"] != "overall", r["slice"]))
    try:
        validation = tfma.load_validation_result(uri)
    except Exception:  # noqa: BLE001
        return out
    out.validation_ok = bool(validation.validation_ok)
    for per_slice in validation.metric_validations_per_slice:
        where = ",".join(f"{k.column}={k.bytes_value.decode() or k.int64_value or k.float_value}"
                         for k in per_slice.slice_key.single_slice_keys)
        out.failures += [failure_text(f, where) for f in per_slice.failures]
    return out


def failure_text(f, where: str = "") -> str:
    t = f.metric_threshold
    if f.metric_key.is_diff:
        bound, what = t.change_threshold.absolute.value, f"{f.metric_key.name} gain over baseline"
    else:
        bound, what = t.value_threshold.lower_bound.value, f.metric_key.name
    value = f.metric_value.double_value.value
    return f"{what} = {value:.3f} < {bound:g}" + (f" on slice {where}" if where else "") + \
        (f" ({f.message})" if f.message else "")


def passed_text(metrics: dict[str, dict[str, float]], thresholds: dict) -> list[str]:
    """The same checks TFMA made (overall slice), stated as passed: the reasons a model was blessed."""
    cand, base = metrics.get(CANDIDATE, {}), metrics.get(BASELINE, {})
    out = []
    for name, lower, gain in (("binary_accuracy", "min_accuracy", "min_accuracy_gain"),
                              ("auc", "min_auc", "min_auc_gain")):
        if name in cand:
            out.append(f"{name} = {cand[name]:.3f} >= {thresholds[lower]:g}")
            if name in base:
                out.append(f"{name} gain over baseline = {cand[name] - base[name]:+.3f} >= {thresholds[gain]:g}")
    return out
