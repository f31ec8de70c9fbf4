"""The schemas: schema.pbtxt (TFDV data schema, for ImportSchemaGen) and config.py (the typed pipeline
config). Imports nothing of ours; everything else may import it.
"""
import os as _os
from pathlib import Path as _Path

# TFT and TFMA need Keras 2: every entry point sets this before TensorFlow is imported.
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

SCHEMA_DIR = str(_Path(__file__).resolve().parent)  # holds schema.pbtxt for ImportSchemaGen
