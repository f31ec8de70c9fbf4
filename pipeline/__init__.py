"""synthdetect: pipeline."""
import os as _os

# TFT and TFMA need Keras 2: every entry point sets this before TensorFlow is imported.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
