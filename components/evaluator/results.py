"""Reading a TFMA evaluation back: in-distribution (eval split) and per-slice metrics of both models,
the same per held-out set, and the gate's verdict as readable sentences (failures, or why it passed).

Slices are taken per split (eval_config.py); the eval split's slices are reported under the names
they had before held-out sets existed ("overall", "source=x"), the held-out splits' apart. An
evaluation without the `split` feature (older runs) is read as before: its overall slice is eval."""
from __future__ import annotations

import dataclasses

from components.evaluator.names import BASELINE, CANDIDATE, EVAL_SPLIT, SPLIT_FEATURE

REPORT_METRICS = ("example_count", "binary_accuracy", "auc", "auc_pr", "precision", "recall", "f1_score")


@dataclasses.dataclass
class TfmaResult:
    metrics: dict[str, dict[str, float]]            # model -> metric -> value (eval split)
    slices: dict[str, list[dict]]                   # model -> [{"slice": "source=x", metric: value}] (eval split)
    validation_ok: bool | None                      # None: no validation result
    failures: list[str]
    # held-out split ("holdout_<name>") -> model -> {"metrics": {...}, "slices": [...]}
    holdout: dict[str, dict[str, dict]] = dataclasses.field(default_factory=dict)


def _value(v) -> float | None:
    if isinstance(v, dict):
        for key in ("doubleValue", "double_value"):
            if key in v:
                return float(v[key])
    return None


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _slice_name(slice_key) -> str:
    return ",".join(f"{k}={_text(v)}" for k, v in slice_key) or "overall"


def _split_of(slice_key) -> tuple[str | None, tuple]:
    """(split, the rest of the key) of a per-split slice; (None, key) for slices without a split."""
    for i, (k, v) in enumerate(slice_key):
        if k == SPLIT_FEATURE:
            return _text(v), tuple(slice_key[:i]) + tuple(slice_key[i + 1:])
    return None, tuple(slice_key)


def load(uri: str, models: tuple[str, ...] = (CANDIDATE, BASELINE)) -> TfmaResult:
    """Everything the report and the release gate need from an Evaluator `evaluation` artifact
    (`models`: the model names of its EvalConfig; the production comparison's are candidate, production)."""
    import tensorflow_model_analysis as tfma

    out = TfmaResult(metrics={}, slices={}, validation_ok=None, failures=[])
    for model in models:
        try:
            result = tfma.load_eval_result(uri, model_name=model)
        except Exception:  # noqa: BLE001 - a failed evaluator leaves no metrics; reported as missing
            continue
        by_split: dict[str | None, list[tuple[tuple, dict]]] = {}
        for slice_key, metrics in result.slicing_metrics:
            values = metrics.get("", {}).get("", {})
            row = {k: x for k, x in ((k, _value(v)) for k, v in values.items())
                   if k in REPORT_METRICS and x is not None}
            split, rest = _split_of(slice_key)
            by_split.setdefault(split, []).append((rest, row))
        # in distribution: the eval split's slices, or (no split feature) every slice as before
        own = by_split[EVAL_SPLIT] if EVAL_SPLIT in by_split else by_split.get(None, [])
        out.metrics[model], out.slices[model] = _table(own)
        for split, items in by_split.items():
            if split not in (None, EVAL_SPLIT):
                metrics_, slices_ = _table(items)
                out.holdout.setdefault(split, {})[model] = {"metrics": metrics_, "slices": slices_}
    try:
        validation = tfma.load_validation_result(uri)
    except Exception:  # noqa: BLE001 - no validation result: validation_ok stays unknown
        return out
    out.validation_ok = bool(validation.validation_ok)
    for per_slice in validation.metric_validations_per_slice:
        # the gate's own slice (split=eval) reads as before: no "on slice"
        where = ",".join(f"{k.column}={k.bytes_value.decode() or k.int64_value or k.float_value}"
                         for k in per_slice.slice_key.single_slice_keys
                         if (k.column, k.bytes_value.decode()) != (SPLIT_FEATURE, EVAL_SPLIT))
        out.failures += [failure_text(f, where) for f in per_slice.failures]
    for spec in validation.missing_slices:
        what = ",".join(f"{v.key}={v.value}" for v in spec.feature_values) or "overall"
        out.failures.append(f"no examples in the gated slice {what} (nothing to evaluate the thresholds on)")
    return out


def _table(items: list[tuple[tuple, dict]]) -> tuple[dict, list[dict]]:
    """(the metrics of the slice with an empty key, every row named and sorted "overall" first)."""
    rows = [{"slice": _slice_name(key), **row} for key, row in items]
    overall = next((row for key, row in items if key == ()), {})
    return overall, sorted(rows, key=lambda r: (r["slice"] != "overall", r["slice"]))


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
