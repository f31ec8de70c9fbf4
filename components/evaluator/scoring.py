"""Scoring images with an exported model through its `serving_images` signature (encoded bytes in,
`p_synthesized` out), and reading the eval split back from the ExampleGen's TFRecords.

Shared by the release check (robustness, calibration) and `synthdetect predict`, so both score
exactly as a client of the SavedModel would."""
from __future__ import annotations

import os
from typing import Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from components.transform.preprocessing import IMAGE_KEY, LABEL_KEY

SERVING_IMAGES = "serving_images"
OUTPUT_KEY = "p_synthesized"
# Example features kept next to each score (for slices and the report).
META_FEATURES = ("path", "label", "source", "generator", "content", "orig_format")


class ModelLoadError(Exception):
    """The path is not a SavedModel with a `serving_images` signature (one-line message)."""


def serving_dir(model_uri: str) -> str:
    """A Trainer `model` artifact keeps the SavedModel under Format-Serving; accept either."""
    sub = os.path.join(model_uri, "Format-Serving")
    return sub if tf.io.gfile.exists(os.path.join(sub, "saved_model.pb")) else model_uri


def load_scorer(model_dir: str) -> Callable[[Sequence[bytes]], np.ndarray]:
    """Returns score(list of encoded images) -> float array of p_synthesized."""
    model_dir = serving_dir(model_dir)
    if not tf.io.gfile.exists(os.path.join(model_dir, "saved_model.pb")):
        raise ModelLoadError(f"{model_dir!r} is not a SavedModel directory (no saved_model.pb)")
    loaded = tf.saved_model.load(model_dir)
    if SERVING_IMAGES not in loaded.signatures:
        raise ModelLoadError(f"{model_dir!r} has no {SERVING_IMAGES!r} signature "
                             f"(has: {', '.join(loaded.signatures) or 'none'})")
    fn = loaded.signatures[SERVING_IMAGES]

    def score(images: Sequence[bytes]) -> np.ndarray:
        if not len(images):
            return np.zeros([0], np.float32)
        out = fn(images=tf.constant(list(images), dtype=tf.string))[OUTPUT_KEY]
        return out.numpy().reshape(-1)
    score.model = loaded  # keep the SavedModel alive with the function
    return score


def score_batched(score: Callable[[Sequence[bytes]], np.ndarray], images: Sequence[bytes],
                  batch_size: int = 32, on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    out = []
    for i in range(0, len(images), batch_size):
        batch = images[i:i + batch_size]
        out.append(score(batch))
        if on_batch:
            on_batch(len(batch))
    return np.concatenate(out) if out else np.zeros([0], np.float32)


def read_split(examples_uri: str, split: str = "eval") -> tuple[list[bytes], np.ndarray, list[dict]]:
    """(encoded images, labels 0/1, metadata dicts) of one split of an ExampleGen artifact."""
    files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*")))
    if not files:
        raise FileNotFoundError(f"no TFRecords for split {split!r} under {examples_uri}")
    images, labels, meta = [], [], []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        f = tf.train.Example.FromString(record.numpy()).features.feature
        images.append(f[IMAGE_KEY].bytes_list.value[0])
        labels.append(int(f[LABEL_KEY].int64_list.value[0]))
        meta.append({k: f[k].bytes_list.value[0].decode() if k in f and f[k].bytes_list.value else ""
                     for k in META_FEATURES})
    return images, np.asarray(labels, np.int64), meta


def chunks(items: Iterable, n: int):
    batch = []
    for x in items:
        batch.append(x)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch
