"""A Trainer's `model` artifact read back: where its SavedModel is, and its training history.

TFX's Trainer exports the SavedModel under `<artifact>/Format-Serving` (`tfx.utils.path_utils`);
`run_fn` adds `assets.extra/training_history.json` ({"variant", "config", "history"}) to it. Every
function here also takes a bare SavedModel directory (a registry version, a test's model).
"""
from __future__ import annotations

import json
import os

HISTORY_FILE = "training_history.json"
HISTORY_PATH = os.path.join("assets.extra", HISTORY_FILE)   # inside the SavedModel directory
SAVED_MODEL_FILE = "saved_model.pb"


SERVING_DIR = "Format-Serving"   # tfx.utils.path_utils.serving_model_path of a generic (Keras) Trainer


def _is_local(path: str) -> bool:
    return "://" not in path


def _exists(path: str) -> bool:
    """Local paths without TensorFlow (a user's `predict` or `registry` error comes in a second, not
    after TensorFlow's import); gs:// and other filesystems through tf.io.gfile."""
    if _is_local(path):
        return os.path.exists(path)
    import tensorflow as tf
    return tf.io.gfile.exists(path)


def serving_model_dir(model_uri: str) -> str:
    """The SavedModel directory of a Trainer model artifact, or `model_uri` itself when that is
    already a SavedModel directory (local or gs://)."""
    sub = os.path.join(model_uri, SERVING_DIR)
    return sub if _exists(os.path.join(sub, SAVED_MODEL_FILE)) else model_uri


def read_history(model_uri: str) -> dict | None:
    """training_history.json of a model artifact or SavedModel directory, or None without one."""
    path = os.path.join(serving_model_dir(model_uri), HISTORY_PATH)
    if not _exists(path):
        return None
    if _is_local(path):
        with open(path) as f:
            return json.load(f)
    import tensorflow as tf
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def model_setting(model_uri: str, key: str, default: str) -> str:
    """One `model.*` setting recorded with the model (`default` for models from before it was)."""
    try:
        return ((read_history(model_uri) or {}).get("config") or {}).get(key, default)
    except (OSError, ValueError):
        return default


def input_mode(model_uri: str) -> str:
    """The model's `model.input_mode` ("resize" for models from before it was recorded)."""
    return model_setting(model_uri, "input_mode", "resize")


def input_filter(model_uri: str) -> str:
    """The model's `model.input_filter` ("none" for models from before it existed)."""
    return model_setting(model_uri, "input_filter", "none")
