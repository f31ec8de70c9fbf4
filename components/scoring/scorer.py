"""The SavedModel client: p_synthesized (and embeddings) from an exported synthdetect model.

* `Scorer(model_dir)(images)`: encoded image bytes -> p_synthesized, through the `serving_images`
  signature, the entry point every consumer of the model uses (release check, predict, curate).
* `Scorer.embeddings(images)`: for FiftyOne Brain, from the same network: VGG16's `block5_pool`
  feature map averaged to 512 numbers (the input of `flatten`, independent of the image size;
  `dense_relu` has only 16 units, often dead in an undertrained model), on the model's evaluation
  input (crop mode: the centre crop). Loaded on first use only.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from components.trainer.artifact import SAVED_MODEL_FILE, input_filter, input_mode, serving_model_dir

SERVING_IMAGES = "serving_images"
OUTPUT_KEY = "p_synthesized"
EMBEDDING_LAYER = "block5_pool"
EMBEDDING_SIZE = 512


class ModelLoadError(Exception):
    """The path is not a loadable SavedModel with a `serving_images` signature (one-line message)."""


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}".rstrip(": ")


class Scorer:
    """Loads a SavedModel (or a Trainer model artifact) once; calling it scores a batch."""

    def __init__(self, model_dir: str):
        import tensorflow as tf
        self.model_dir = serving_model_dir(model_dir)
        if not tf.io.gfile.exists(os.path.join(self.model_dir, SAVED_MODEL_FILE)):
            raise ModelLoadError(f"{self.model_dir!r} is not a SavedModel directory (no {SAVED_MODEL_FILE})")
        try:
            self._loaded = tf.saved_model.load(self.model_dir)
        except Exception as e:  # noqa: BLE001 - any load failure is one line for the user
            raise ModelLoadError(f"cannot load the SavedModel at {self.model_dir!r}: {_first_line(e)}") from None
        if SERVING_IMAGES not in self._loaded.signatures:
            raise ModelLoadError(f"{self.model_dir!r} has no {SERVING_IMAGES!r} signature "
                                 f"(has: {', '.join(self._loaded.signatures) or 'none'})")
        self._serve = self._loaded.signatures[SERVING_IMAGES]
        self._embed: tuple[Any, int, str, str] | None = None   # (embedding model, input size, mode, filter)
        self.embedding_note = ""   # why there are no embeddings, once that is known

    def __call__(self, images: Sequence[bytes]) -> np.ndarray:
        import tensorflow as tf
        if not len(images):
            return np.zeros([0], np.float32)
        out = self._serve(images=tf.constant(list(images), dtype=tf.string))[OUTPUT_KEY]
        return out.numpy().reshape(-1)

    def score_batched(self, images: Sequence[bytes], batch_size: int = 32,
                      on_batch: Callable[[int], None] | None = None) -> np.ndarray:
        out = []
        for i in range(0, len(images), batch_size):
            batch = images[i:i + batch_size]
            out.append(self(batch))
            if on_batch:
                on_batch(len(batch))
        return np.concatenate(out) if out else np.zeros([0], np.float32)

    def _embedding_model(self):
        if self._embed is None and not self.embedding_note:
            try:
                import tf_keras as keras
                model = keras.models.load_model(self.model_dir, compile=False)
                layer = model.get_layer(EMBEDDING_LAYER)
                self._embed = (keras.Model(model.input, keras.layers.GlobalAveragePooling2D()(layer.output)),
                               int(model.input_shape[1]), input_mode(self.model_dir), input_filter(self.model_dir))
            except Exception as e:  # noqa: BLE001 - predictions still work; embeddings are skipped
                self.embedding_note = f"no embeddings ({_first_line(e)[:120]})"
        return self._embed

    def embeddings(self, images: Sequence[bytes], batch_size: int = 32) -> np.ndarray | None:
        """[N, 512] embeddings, or None when the model has no VGG16 `block5_pool` (see embedding_note)."""
        import tensorflow as tf

        from components.transform.preprocessing import decode_images
        embed = self._embedding_model()
        if embed is None:
            return None
        model, image_size, mode, filt = embed
        out = [model(decode_images(tf.constant(list(images[i:i + batch_size])), image_size, mode, input_filter=filt),
                     training=False).numpy() for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros([0, EMBEDDING_SIZE], np.float32)


def load_scorer(model_dir: str) -> Scorer:
    return Scorer(model_dir)
