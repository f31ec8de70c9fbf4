"""ReleaseCheck, the component after the Evaluator: calibration (threshold for a target FPR on real
images), robustness (accuracy under JPEG, downscaling, blur) and the final blessing (TFMA's AND
robustness).

`check` (run_release_check, and load_check / load_scores / calibrated_threshold to read its `check`
artifact back), `blessing` (the `blessing` artifact's property and BLESSED / NOT_BLESSED marker,
written and read back), `component` (the TFX component), `perturb` (the perturbations). Imports evaluator
and scoring; imported by the pipeline graph, registry (the pusher reads the check) and
pipeline/artifacts.py.
"""
