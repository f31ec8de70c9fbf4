"""Scores and embeddings from an exported synthdetect SavedModel.

* p_synthesized through the `serving_images` signature (encoded image bytes -> [N, 1]), the same
  entry point every consumer of the model uses.
* Embeddings for FiftyOne Brain from the same network: the VGG16 `block5_pool` feature map
  global-average-pooled to 512 numbers (the input of the `flatten` layer, made independent of the
  image size; `dense_relu` has only 16 units, often dead in an undertrained model).
"""
from __future__ import annotations

import glob
import json
import os
from typing import Iterable

import numpy as np

from components.curation.members import CurationError

EMBEDDING_LAYER = "block5_pool"
DEFAULT_THRESHOLD = 0.5


def resolve_model(ref: str, registry_root: str | None = None) -> str:
    """A SavedModel directory from `/path/to/savedmodel` or `registry:<alias-or-version>`."""
    if ref.startswith("registry:"):
        return _resolve_registry(ref, registry_root)
    path = ref
    if os.path.isdir(os.path.join(path, "Format-Serving")):  # a TFX Trainer model artifact
        path = os.path.join(path, "Format-Serving")
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise CurationError(f"--model {ref!r}: no SavedModel (saved_model.pb) there")
    return path


def _resolve_registry(ref: str, registry_root: str | None) -> str:
    """`registry:<alias|vN|N>` through components.registry (the versioned registry of the pushes)."""
    try:
        from components.registry.store import RegistryError, open_registry
    except ModuleNotFoundError:
        raise CurationError(f"--model {ref!r}: the model registry (components/registry) is not available in this "
                            "version; pass the path of a SavedModel instead") from None
    name = ref[len("registry:"):].strip() or "production"
    if not registry_root:
        raise CurationError(f"--model {ref!r}: no registry configured (config key `registry`)")
    candidates = [registry_root] + ([os.path.join(registry_root, "vgg16_finetune")] if "://" not in registry_root
                                    else [registry_root.rstrip("/") + "/vgg16_finetune"])
    last: Exception | None = None
    for location in candidates:
        try:
            reg = open_registry(location)
            if not reg.versions():
                continue
            version = reg.resolve(name)
            if hasattr(reg, "local_dir"):
                path = str(reg.local_dir(version))
            else:  # gs:// registry: a local copy under the cache
                from components.curation.dataset import default_cache_dir
                dest = os.path.join(os.path.dirname(default_cache_dir()), "models",
                                    location.replace("://", "_").replace("/", "_"), version)
                path = str(reg.download(version, dest))  # a no-op when the copy is complete
            return resolve_model(path)
        except RegistryError as e:
            last = e
    raise CurationError(f"--model {ref!r}: " + (str(last) if last else f"no model versions in registry {registry_root!r}"))


def model_threshold(model_dir: str) -> float | None:
    """The calibrated decision threshold shipped with the model (a registry version's model.json,
    or assets.extra/*.json, with a top-level `threshold`), or None."""
    for path in [os.path.join(model_dir, "model.json")] + sorted(glob.glob(os.path.join(model_dir, "assets.extra",
                                                                                          "*.json"))):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            for key in ("threshold", "calibrated_threshold", "decision_threshold"):
                if isinstance(data.get(key), (int, float)):
                    return float(data[key])
            cal = data.get("calibration")
            if isinstance(cal, dict) and isinstance(cal.get("threshold"), (int, float)):
                return float(cal["threshold"])
    return None


def _input_mode(model_dir: str) -> str:
    """The model's `model.input_mode` from its training_history.json ("resize" for older models)."""
    path = os.path.join(model_dir, "assets.extra", "training_history.json")
    try:
        with open(path) as f:
            return json.load(f).get("config", {}).get("input_mode", "resize")
    except (OSError, ValueError):
        return "resize"


class Scorer:
    """Loads a SavedModel once; `score(images)` -> (p [N], embeddings [N, D] or None)."""

    def __init__(self, model_dir: str, batch_size: int = 32):
        import tensorflow as tf
        self.model_dir = model_dir
        self.batch_size = batch_size
        try:
            self._loaded = tf.saved_model.load(model_dir)
            self._serve = self._loaded.signatures["serving_images"]
        except KeyError:
            raise CurationError(f"model {model_dir!r} has no 'serving_images' signature") from None
        except Exception as e:  # noqa: BLE001
            raise CurationError(f"cannot load the SavedModel at {model_dir!r}: {type(e).__name__}: "
                                f"{str(e).splitlines()[0][:200] if str(e) else ''}") from None
        self._embed = None
        self.embedding_note = ""
        try:
            import tf_keras as keras
            model = keras.models.load_model(model_dir, compile=False)
            layer = model.get_layer(EMBEDDING_LAYER)
            self._embed = keras.Model(model.input, keras.layers.GlobalAveragePooling2D()(layer.output))
            self.image_size = int(model.input_shape[1])
            self.input_mode = _input_mode(model_dir)
        except Exception as e:  # noqa: BLE001 - predictions still work; uniqueness is skipped
            self.embedding_note = f"no embeddings ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})"

    def score(self, images: Iterable[bytes]) -> tuple[np.ndarray, np.ndarray | None]:
        import tensorflow as tf

        from components.transform.preprocessing import decode_images
        images = list(images)
        ps, embs = [], []
        for i in range(0, len(images), self.batch_size):
            batch = tf.constant(images[i:i + self.batch_size])
            ps.append(self._serve(images=batch)["p_synthesized"].numpy().reshape(-1))
            if self._embed is not None:
                # the model's evaluation input (crop mode: the centre crop)
                embs.append(self._embed(decode_images(batch, self.image_size, self.input_mode),
                                        training=False).numpy())
        p = np.concatenate(ps) if ps else np.zeros([0], np.float32)
        e = (np.concatenate(embs) if embs else np.zeros([0, 512], np.float32)) if self._embed is not None else None
        return p, e
