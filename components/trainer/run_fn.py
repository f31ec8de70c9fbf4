"""TFX Trainer entry point shared by both trainers (`vgg16_finetune` and `baseline`).

The two Trainer components differ only in `custom_config` (weights and variant name). The exported
SavedModel has two signatures:
  serving_default  serialized tf.Example [N] -> {"p_synthesized": [N, 1]}  (TFMA, batch jobs)
  serving_images   encoded image bytes  [N] -> {"p_synthesized": [N, 1]}  (synthdetect predict)
and `assets.extra/training_history.json` with the per-epoch metrics. Both signatures decode with
`decode_images`, the function training's tf.data uses, in the model's `input_mode` (crop mode: the
mean over `eval_crops` crops).
"""
from __future__ import annotations

import json
import os

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging

from components.trainer.model import build_model
from components.transform.preprocessing import IMAGE_KEY, LABEL_KEY, decode_images, predict_images

HISTORY_FILE = "training_history.json"


def match_files(file_patterns) -> list[str]:
    """The files matching one pattern or a list of patterns (local or gs://), sorted."""
    patterns = [file_patterns] if isinstance(file_patterns, str) else list(file_patterns)
    return sorted(f for p in patterns for f in tf.io.gfile.glob(p))


def make_dataset(file_patterns, feature_spec: dict, image_size: int, batch_size: int,
                 shuffle: bool, seed: int, deterministic: bool = False, *, training: bool = False,
                 augment_prob: float | None = None, input_mode: str = "resize") -> tf.data.Dataset:
    """GZIP TFRecords -> (VGG16 input, label) batches: parallel interleave and map, AUTOTUNE,
    prefetch. `training`: each image gets a seed from a stream that changes every epoch (random
    crops in crop mode, and the shortcut augmentation when `augment_prob` is set); otherwise the
    evaluation input (deterministic; crop mode: the centre crop)."""
    files = match_files(file_patterns)
    if not files:
        raise ValueError(f"no TFRecord files match {file_patterns}")
    opts = tf.data.Options()
    opts.deterministic = deterministic
    ds = tf.data.Dataset.from_tensor_slices(files)
    ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
                       num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if shuffle:
        ds = ds.shuffle(2048, seed=seed, reshuffle_each_iteration=True)
    if training:  # stateless randomness: reproducible from `seed`, different in every epoch
        ds = tf.data.Dataset.zip(ds, tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True))
    else:
        ds = ds.map(lambda s: (s, tf.constant(0, tf.int64)))
    spec = {k: feature_spec[k] for k in (IMAGE_KEY, LABEL_KEY)}

    def parse(serialized, seeds):
        feats = tf.io.parse_example(serialized, spec)
        images = decode_images(feats[IMAGE_KEY], image_size, input_mode, seeds=seeds if training else None,
                               augment_prob=augment_prob)
        labels = tf.cast(tf.reshape(feats[LABEL_KEY], [-1, 1]), tf.float32)
        return images, labels

    return (ds.batch(batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
            .prefetch(tf.data.AUTOTUNE).with_options(opts))


def _signatures(model: keras.Model, tf_transform_output: tft.TFTransformOutput, image_size: int,
                input_mode: str = "resize", eval_crops: int = 1) -> dict:
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    serving_spec = {IMAGE_KEY: raw_spec[IMAGE_KEY]}

    def predict_from_raw(raw: dict) -> dict:
        transformed = model.tft_layer(raw)
        return {"p_synthesized": predict_images(model, transformed[IMAGE_KEY], image_size, input_mode, eval_crops)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_tf_examples(serialized):
        return predict_from_raw(tf.io.parse_example(serialized, serving_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve_images(images):
        return predict_from_raw({IMAGE_KEY: tf.reshape(images, [-1, 1])})

    return {"serving_default": serve_tf_examples.get_concrete_function(),
            "serving_images": serve_images.get_concrete_function()}


def make_strategy(name: str, tpu_address: str | None = None) -> tf.distribute.Strategy:
    """default: CPU or one GPU; mirrored: all local GPUs; tpu: TPUStrategy on `tpu_address`."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_address or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def run_fn(fn_args) -> None:
    cc = dict(fn_args.custom_config or {})
    variant = cc.get("variant", "vgg16_finetune")
    image_size = int(cc.get("image_size", 224))
    batch_size = int(cc.get("batch_size", 32))
    epochs = int(cc.get("epochs", 10))
    seed = int(cc.get("seed", 42))
    deterministic = bool(cc.get("deterministic", False))
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()

    strategy = make_strategy(cc.get("strategy", "default"), cc.get("tpu_address"))
    if cc.get("mixed_precision"):
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if cc.get("strategy") == "tpu" else "mixed_float16")

    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    spec = tf_transform_output.transformed_feature_spec()
    augment_prob = float(cc.get("augment_prob", 0.5)) if cc.get("augment", True) else None
    input_mode = cc.get("input_mode", "resize")
    eval_crops = int(cc.get("eval_crops", 1))
    train_ds = make_dataset(fn_args.train_files, spec, image_size, batch_size, True, seed, deterministic,
                            training=True, augment_prob=augment_prob, input_mode=input_mode)
    # validation during fit: the evaluation input (crop mode: the centre crop; the exported
    # signatures average eval_crops crops)
    eval_ds = make_dataset(fn_args.eval_files, spec, image_size, batch_size, False, seed, deterministic,
                           input_mode=input_mode)
    decay_steps = None
    if cc.get("lr_schedule") == "cosine":  # the schedule needs the real step count: count the records once
        n_train = sum(1 for _ in tf.data.TFRecordDataset(match_files(fn_args.train_files), compression_type="GZIP"))
        decay_steps = epochs * max(1, -(-n_train // batch_size))

    with strategy.scope():
        model = build_model(image_size, weights=cc.get("weights", "none"), dense_units=int(cc.get("dense_units", 16)),
                            dropout=float(cc.get("dropout", 0.1)), learning_rate=float(cc.get("learning_rate", 1e-4)),
                            l2=float(cc.get("l2", 0.0)), label_smoothing=float(cc.get("label_smoothing", 0.0)),
                            lr_schedule=cc.get("lr_schedule", "constant"),
                            decay_steps=decay_steps, xla=bool(cc.get("xla", False)))
    logging.info("training %s: %d params, weights=%s, %d epochs, batch %d, %dpx, strategy %s (%d replicas), "
                 "augmentation p=%s, input %s (eval crops %d)", variant, model.count_params(), cc.get("weights", "none"),
                 epochs, batch_size, image_size, cc.get("strategy", "default"), strategy.num_replicas_in_sync,
                 augment_prob, input_mode, eval_crops)
    callbacks = [keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)]
    if int(cc.get("early_stopping_patience", 0)) > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", restore_best_weights=True,
                                                       patience=int(cc["early_stopping_patience"])))
    keras.utils.disable_interactive_logging()  # epoch lines go to the run log, not over the progress bar
    history = model.fit(train_ds, validation_data=eval_ds, epochs=epochs, verbose=2, callbacks=callbacks)
    keras.mixed_precision.set_global_policy("float32")

    model.save(fn_args.serving_model_dir, save_format="tf",
               signatures=_signatures(model, tf_transform_output, image_size, input_mode, eval_crops))
    extra = os.path.join(fn_args.serving_model_dir, "assets.extra")
    tf.io.gfile.makedirs(extra)
    with tf.io.gfile.GFile(os.path.join(extra, HISTORY_FILE), "w") as f:
        json.dump({"variant": variant, "config": cc,
                   "history": {k: [float(x) for x in v] for k, v in history.history.items()}}, f, indent=2)
