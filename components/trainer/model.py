"""The paper's model: VGG16 base (all layers trainable) + Flatten -> Dense(16, ReLU) -> Dropout(0.1)
-> Dense(1, sigmoid), Adam, binary cross-entropy. The baseline is the same network from scratch."""
from __future__ import annotations

import os
import re
import socket

import h5py
import numpy as np
import tf_keras as keras

from schemas.config import ModelConfig

VGG16_NOTOP_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
                   "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5")
VGG16_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


class WeightsError(Exception):
    """The configured weights cannot be used; one-line message naming the config key."""


def fetch_imagenet_weights(timeout_s: float = 20.0) -> str:
    """Path of the cached ImageNet notop weights, downloading them (Keras cache) if needed."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        return keras.utils.get_file(VGG16_NOTOP_FILE, VGG16_NOTOP_URL, cache_subdir="models",
                                    file_hash="6d6bbae143d832006294945121d1f1fc")
    except Exception as e:  # noqa: BLE001 - any network/cache failure is the same user problem
        raise WeightsError(
            f"model.weights='imagenet': cannot download the VGG16 ImageNet weights ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:120]}); put {VGG16_NOTOP_FILE} in ~/.keras/models/, or set "
            "model.weights to a local .h5 file or to none") from None
    finally:
        socket.setdefaulttimeout(old)


def _natural(key: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def load_vgg16_weights(base: keras.Model, path: str) -> int:
    """Load VGG16 conv weights from a Keras 2 `.h5` (layer_names attribute) or a Keras 3
    `.weights.h5` file (…/vars/0, …/vars/1 groups, any nesting). Returns the layers loaded."""
    convs = [layer for layer in base.layers if isinstance(layer, keras.layers.Conv2D)]
    if "://" in path:  # gs:// (or any tf.io.gfile URI): h5py reads local files only
        import tempfile

        import tensorflow as tf
        local = os.path.join(tempfile.mkdtemp(prefix="synthdetect-weights-"), os.path.basename(path))
        try:
            tf.io.gfile.copy(path, local, overwrite=True)
        except Exception as e:  # noqa: BLE001 - any filesystem/network failure is one line for the user
            raise WeightsError(f"model.weights={path!r} cannot be copied: {type(e).__name__}: {e}") from None
        path = local
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise WeightsError(f"model.weights={path!r} is not a readable HDF5 weights file ({e})") from None
    with f:
        if "layer_names" in f.attrs or ("model_weights" in f and "layer_names" in f["model_weights"].attrs):
            base.load_weights(path, by_name=True)
            return len(convs)
        pairs: list[tuple[str, np.ndarray, np.ndarray]] = []

        def visit(name, obj):
            if isinstance(obj, h5py.Group) and "vars" in obj and "0" in obj["vars"] and "1" in obj["vars"]:
                k, b = obj["vars"]["0"], obj["vars"]["1"]
                if len(k.shape) == 4 and k.shape[:2] == (3, 3):
                    pairs.append((name, k[()], b[()]))
        f.visititems(visit)
    pairs.sort(key=lambda p: _natural(p[0]))
    if len(pairs) != len(convs):
        raise WeightsError(f"model.weights={path!r}: found {len(pairs)} 3x3 conv layers, VGG16 has {len(convs)}")
    for layer, (name, k, b) in zip(convs, pairs, strict=True):
        want = tuple(layer.kernel.shape)
        if k.shape != want:
            raise WeightsError(f"model.weights={path!r}: {name} has shape {k.shape}, {layer.name} needs {want}")
        layer.set_weights([k, b])
    return len(convs)


_DEFAULT = {name: field.default for name, field in ModelConfig.model_fields.items()}  # the config's defaults


def build_model(image_size: int, weights: str = "none", dense_units: int = _DEFAULT["dense_units"],
                dropout: float = _DEFAULT["dropout"], learning_rate: float = _DEFAULT["learning_rate"],
                l2: float = _DEFAULT["l2"], label_smoothing: float = _DEFAULT["label_smoothing"],
                lr_schedule: str = _DEFAULT["lr_schedule"], decay_steps: int | None = None,
                xla: bool = _DEFAULT["xla"]) -> keras.Model:
    """The paper's network (defaults: `model:` in the config, except no pretrained weights). `l2`,
    `label_smoothing`, `lr_schedule` are options beyond the paper (off by default). Under a
    mixed-precision policy the output layer stays float32."""
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(image_size, image_size, 3))
    if weights == "imagenet":
        load_vgg16_weights(base, fetch_imagenet_weights())
    elif weights not in ("none", "", None):
        load_vgg16_weights(base, weights)
    base.trainable = True  # the paper unfreezes every layer
    reg = keras.regularizers.l2(l2) if l2 else None
    x = keras.layers.Flatten(name="flatten")(base.output)
    x = keras.layers.Dense(dense_units, activation="relu", kernel_regularizer=reg, name="dense_relu")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    out = keras.layers.Dense(1, activation="sigmoid", dtype="float32", kernel_regularizer=reg,
                             name="p_synthesized")(x)
    model = keras.Model(base.input, out, name="vgg16_synthdetect")
    lr = learning_rate
    if lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, decay_steps or 1000))
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing),
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
                  jit_compile=xla)
    return model
