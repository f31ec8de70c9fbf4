"""The Evaluator's model and slice names, apart from eval_config (which imports TFMA): readers of a
run (`report`, `runs`, ReleaseCheck's reading side) need the names, not TFMA, to say what is missing."""
CANDIDATE = "candidate"
BASELINE = "baseline"
PRODUCTION = "production"   # the registry's production model (champion/challenger; a second Evaluator)
PREDICTION_KEY = "p_synthesized"
SPLIT_FEATURE = "split"
EVAL_SPLIT = "eval"
SLICE_FEATURES = ("label", "source", "generator", "content", "orig_format")
