"""The release gate's evaluation pieces; not a component (the pipeline runs TFX's Evaluator).

`eval_config` (the TFMA EvalConfig: candidate vs baseline, value and change thresholds, slices),
`results` (reading an `evaluation` artifact back: metrics, slices, the verdict in sentences),
`calibration` (numpy: the calibrated threshold, ROC points, classification reports). Imported by
the pipeline graph, release_check, registry and the read-back layer (pipeline/artifacts.py).
"""
