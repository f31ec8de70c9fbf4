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

from components.trainer.artifact import HISTORY_PATH
from components.trainer.model import build_model
from components.transform.preprocessing import IMAGE_KEY, LABEL_KEY, decode_images, predict_images
from schemas.config import ModelConfig


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


def model_settings(custom_config: dict | None) -> tuple[str, ModelConfig]:
    """(variant, validated model settings) from the Trainer's custom_config, which
    `pipeline.pipeline.trainer_config` writes: `model:` of the config plus the variant name. The
    defaults are ModelConfig's, the one definition of them."""
    cc = dict(custom_config or {})
    variant = cc.pop("variant", None)
    if not variant:
        raise ValueError("the Trainer's custom_config names no 'variant' (see pipeline.pipeline.trainer_config)")
    return str(variant), ModelConfig.model_validate(cc)


def run_fn(fn_args) -> None:
    variant, m = model_settings(fn_args.custom_config)
    keras.utils.set_random_seed(m.seed)
    if m.deterministic:
        tf.config.experimental.enable_op_determinism()

    strategy = make_strategy(m.strategy, m.tpu_address)
    if m.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if m.strategy == "tpu" else "mixed_float16")

    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    spec = tf_transform_output.transformed_feature_spec()
    augment_prob = m.augment_prob if m.augment else None
    train_ds = make_dataset(fn_args.train_files, spec, m.image_size, m.batch_size, True, m.seed, m.deterministic,
                            training=True, augment_prob=augment_prob, input_mode=m.input_mode)
    # validation during fit: the evaluation input (crop mode: the centre crop; the exported
    # signatures average eval_crops crops)
    eval_ds = make_dataset(fn_args.eval_files, spec, m.image_size, m.batch_size, False, m.seed, m.deterministic,
                           input_mode=m.input_mode)
    decay_steps = None
    if m.lr_schedule == "cosine":  # the schedule needs the real step count: count the records once
        n_train = sum(1 for _ in tf.data.TFRecordDataset(match_files(fn_args.train_files), compression_type="GZIP"))
        decay_steps = m.epochs * max(1, -(-n_train // m.batch_size))

    with strategy.scope():
        model = build_model(m.image_size, weights=m.weights, dense_units=m.dense_units, dropout=m.dropout,
                            learning_rate=m.learning_rate, l2=m.l2, label_smoothing=m.label_smoothing,
                            lr_schedule=m.lr_schedule, decay_steps=decay_steps, xla=m.xla)
    logging.info("training %s: %d params, weights=%s, %d epochs, batch %d, %dpx, strategy %s (%d replicas), "
                 "augmentation p=%s, input %s (eval crops %d)", variant, model.count_params(), m.weights,
                 m.epochs, m.batch_size, m.image_size, m.strategy, strategy.num_replicas_in_sync,
                 augment_prob, m.input_mode, m.eval_crops)
    callbacks = [keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir)]
    if m.early_stopping_patience > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", restore_best_weights=True,
                                                       patience=m.early_stopping_patience))
    keras.utils.disable_interactive_logging()  # epoch lines go to the run log, not over the progress bar
    history = model.fit(train_ds, validation_data=eval_ds, epochs=m.epochs, verbose=2, callbacks=callbacks)
    keras.mixed_precision.set_global_policy("float32")

    model.save(fn_args.serving_model_dir, save_format="tf",
               signatures=_signatures(model, tf_transform_output, m.image_size, m.input_mode, m.eval_crops))
    extra = os.path.join(fn_args.serving_model_dir, os.path.dirname(HISTORY_PATH))
    tf.io.gfile.makedirs(extra)
    with tf.io.gfile.GFile(os.path.join(fn_args.serving_model_dir, HISTORY_PATH), "w") as f:
        json.dump({"variant": variant, "config": {**m.model_dump(), "variant": variant},
                   "history": {k: [float(x) for x in v] for k, v in history.history.items()}}, f, indent=2)
