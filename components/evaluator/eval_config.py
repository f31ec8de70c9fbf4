"""TFMA configuration of the release gate: the fine-tune (candidate) against the from-scratch
baseline, with absolute (value) and relative (change) thresholds on accuracy and AUC."""
from __future__ import annotations

import tensorflow_model_analysis as tfma

from components.transform.preprocessing import LABEL_KEY
from schemas.config import ThresholdConfig

CANDIDATE = "candidate"
BASELINE = "baseline"
PREDICTION_KEY = "p_synthesized"
SLICE_FEATURES = ("label", "source", "generator", "content", "orig_format")


def _overall(lower: float, gain: float) -> list[tfma.PerSliceMetricThreshold]:
    """Gate on the overall slice only (per-slice figures are reported, not gated)."""
    return [tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": lower}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": gain})))]


def make_eval_config(t: ThresholdConfig) -> tfma.EvalConfig:
    def spec(name: str, baseline: bool) -> tfma.ModelSpec:
        return tfma.ModelSpec(name=name, signature_name="serving_default", label_key=LABEL_KEY,
                              prediction_key=PREDICTION_KEY, is_baseline=baseline)

    metrics = [
        tfma.MetricConfig(class_name="ExampleCount"),
        tfma.MetricConfig(class_name="BinaryAccuracy", per_slice_thresholds=_overall(t.min_accuracy, t.min_accuracy_gain)),
        tfma.MetricConfig(class_name="AUC", per_slice_thresholds=_overall(t.min_auc, t.min_auc_gain)),
        tfma.MetricConfig(class_name="AUC", config='{"name": "auc_pr", "curve": "PR"}'),
        tfma.MetricConfig(class_name="Precision"),
        tfma.MetricConfig(class_name="Recall"),
        tfma.MetricConfig(class_name="F1Score"),
        tfma.MetricConfig(class_name="ConfusionMatrixPlot"),
        tfma.MetricConfig(class_name="CalibrationPlot"),
    ]
    return tfma.EvalConfig(
        model_specs=[spec(CANDIDATE, False), spec(BASELINE, True)],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[k]) for k in SLICE_FEATURES],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics, model_names=[CANDIDATE, BASELINE])],
    )
