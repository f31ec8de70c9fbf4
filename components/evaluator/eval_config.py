"""TFMA configuration of the release gate: the fine-tune (candidate) against the from-scratch
baseline, with absolute (value) and relative (change) thresholds on accuracy and AUC.

The Evaluator reads the eval split and every held-out split (`holdout_<name>`) as one stream, so
the overall slice would mix held-out data into the in-distribution figures. Every example carries
its split (the `split` feature ImageExampleGen writes), so all slices are taken per split: `split`
alone and `split` crossed with each slice feature. The gate's thresholds apply to the slice
split=eval only: in-distribution gating is what it was before held-out sets existed. The held-out
gate (`min_holdout_auc`, `max_generalisation_gap`) is ReleaseCheck's (it handles single-label sets).
"""
from __future__ import annotations

import tensorflow_model_analysis as tfma

from components.evaluator.names import (BASELINE, CANDIDATE, EVAL_SPLIT, PREDICTION_KEY, PRODUCTION,
                                        SLICE_FEATURES, SPLIT_FEATURE)
from components.transform.preprocessing import LABEL_KEY
from schemas.config import ThresholdConfig


def in_distribution() -> tfma.SlicingSpec:
    """The slice every gate threshold applies to: the eval split."""
    return tfma.SlicingSpec(feature_values={SPLIT_FEATURE: EVAL_SPLIT})


def _gate(lower: float | None, gain: float) -> list[tfma.PerSliceMetricThreshold]:
    """Gate on the in-distribution slice only (other slices are reported, not gated); `lower` None:
    the change against the baseline model only."""
    value = None if lower is None else tfma.GenericValueThreshold(lower_bound={"value": lower})
    return [tfma.PerSliceMetricThreshold(slicing_specs=[in_distribution()], threshold=tfma.MetricThreshold(
        value_threshold=value,
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": gain})))]


def slicing_specs() -> list[tfma.SlicingSpec]:
    """Overall (all splits mixed; not reported), per split, and per split x slice feature."""
    return ([tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[SPLIT_FEATURE])]
            + [tfma.SlicingSpec(feature_keys=[SPLIT_FEATURE, k]) for k in SLICE_FEATURES])


def _spec(name: str, baseline: bool) -> tfma.ModelSpec:
    return tfma.ModelSpec(name=name, signature_name="serving_default", label_key=LABEL_KEY,
                          prediction_key=PREDICTION_KEY, is_baseline=baseline)


def _metrics(accuracy_gate: list, auc_gate: list, plots: bool) -> list[tfma.MetricConfig]:
    return [
        tfma.MetricConfig(class_name="ExampleCount"),
        tfma.MetricConfig(class_name="BinaryAccuracy", per_slice_thresholds=accuracy_gate),
        tfma.MetricConfig(class_name="AUC", per_slice_thresholds=auc_gate),
        tfma.MetricConfig(class_name="AUC", config='{"name": "auc_pr", "curve": "PR"}'),
        tfma.MetricConfig(class_name="Precision"),
        tfma.MetricConfig(class_name="Recall"),
        tfma.MetricConfig(class_name="F1Score"),
    ] + ([tfma.MetricConfig(class_name="ConfusionMatrixPlot"), tfma.MetricConfig(class_name="CalibrationPlot")]
         if plots else [])


def make_eval_config(t: ThresholdConfig) -> tfma.EvalConfig:
    """The candidate against the from-scratch baseline: absolute bars and gains over the baseline."""
    metrics = _metrics(_gate(t.min_accuracy, t.min_accuracy_gain), _gate(t.min_auc, t.min_auc_gain), plots=True)
    return tfma.EvalConfig(
        model_specs=[_spec(CANDIDATE, False), _spec(BASELINE, True)],
        slicing_specs=slicing_specs(),
        metrics_specs=[tfma.MetricsSpec(metrics=metrics, model_names=[CANDIDATE, BASELINE])],
    )


def make_production_eval_config(t: ThresholdConfig) -> tfma.EvalConfig:
    """The candidate against the production model on the same data and slices: only the gains
    (`min_*_gain_over_production`; the absolute bars are the first Evaluator's)."""
    metrics = _metrics(_gate(None, t.min_accuracy_gain_over_production), _gate(None, t.min_auc_gain_over_production),
                       plots=False)
    return tfma.EvalConfig(
        model_specs=[_spec(CANDIDATE, False), _spec(PRODUCTION, True)],
        slicing_specs=slicing_specs(),
        metrics_specs=[tfma.MetricsSpec(metrics=metrics, model_names=[CANDIDATE, PRODUCTION])],
    )
