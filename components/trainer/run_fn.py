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

import hashlib
import json
import logging as stdlib_logging
import os
import time

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
                 augment_prob: float | None = None, input_mode: str = "resize",
                 input_filter: str = "none") -> tf.data.Dataset:
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
                               augment_prob=augment_prob, input_filter=input_filter)
        labels = tf.cast(tf.reshape(feats[LABEL_KEY], [-1, 1]), tf.float32)
        return images, labels

    return (ds.batch(batch_size).map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
            .prefetch(tf.data.AUTOTUNE).with_options(opts))


def _signatures(model: keras.Model, tf_transform_output: tft.TFTransformOutput, image_size: int,
                input_mode: str = "resize", eval_crops: int = 1, input_filter: str = "none") -> dict:
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = tf_transform_output.raw_feature_spec()
    serving_spec = {IMAGE_KEY: raw_spec[IMAGE_KEY]}

    def predict_from_raw(raw: dict) -> dict:
        transformed = model.tft_layer(raw)
        return {"p_synthesized": predict_images(model, transformed[IMAGE_KEY], image_size, input_mode, eval_crops,
                                                  input_filter)}

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


# ------------------------------------------------------------------------------------ long jobs
def _data_fingerprint(file_patterns) -> str:
    """What the Trainer trains on, independent of where and in which order it was written: the
    ingestion's data fingerprint when the patterns point into an ingestion output (its summary's
    sha256), else the sha256 of the sorted digests of every example's image bytes and label. (Transform rewrites
    the examples in an order, and with a serialisation, that change from run to run: only the
    multiset of parsed values is stable. One read of the data, small beside an epoch.)"""
    from components.ingest.outputs import fingerprint
    patterns = [file_patterns] if isinstance(file_patterns, str) else list(file_patterns)
    roots = sorted({os.path.dirname(os.path.dirname(p.rstrip("/"))) for p in patterns})
    try:
        return ",".join(fingerprint(r) for r in roots)
    except (FileNotFoundError, OSError, ValueError):
        pass
    spec = {IMAGE_KEY: tf.io.VarLenFeature(tf.string), LABEL_KEY: tf.io.VarLenFeature(tf.int64)}
    def parse(records):
        f = tf.io.parse_example(records, spec)
        return tf.sparse.to_dense(f[IMAGE_KEY], default_value=b""), tf.sparse.to_dense(f[LABEL_KEY], default_value=-1)
    ds = tf.data.TFRecordDataset(match_files(patterns), compression_type="GZIP").batch(256).map(parse)
    digests = []
    for images, labels in ds.as_numpy_iterator():   # parsed values: a tf.Example's bytes are not canonical
        digests += [hashlib.sha256(b"".join(im) + lab.tobytes()).digest()
                    for im, lab in zip(images, labels, strict=True)]
    return "records:" + hashlib.sha256(b"".join(sorted(digests))).hexdigest()


def checkpoint_dir(fn_args, variant: str, m: ModelConfig) -> str:
    """Where a Trainer keeps its per-epoch checkpoint: beside its executions' outputs, outside any one
    of them (a killed execution's folder is removed by the next run), keyed on the data and the
    settings: `<pipeline_root>/<Trainer id>/_checkpoints/<key>`. A rerun with the same data and
    settings finds it and resumes; any change gives another key and a fresh start."""
    serving = fn_args.serving_model_dir.rstrip("/")          # <root>/<Trainer id>/model/<execution>/Format-Serving
    component_dir = os.path.dirname(os.path.dirname(os.path.dirname(serving)))
    key = hashlib.sha256(json.dumps({
        "train": _data_fingerprint(fn_args.train_files), "eval": _data_fingerprint(fn_args.eval_files),
        "config": {**m.model_dump(), "variant": variant}}, sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(component_dir, "_checkpoints", key)


class EpochJournal(keras.callbacks.Callback):
    """The metrics of every finished epoch, kept beside the checkpoint (epochs.json), so that a
    resumed training's history starts at epoch 1, not at the epoch it resumed from."""

    def __init__(self, folder: str):
        super().__init__()
        self.path = os.path.join(folder, "epochs.json")
        self.epochs: list[dict] = []
        self._t = 0.0

    def load(self) -> list[dict]:
        if tf.io.gfile.exists(self.path):
            with tf.io.gfile.GFile(self.path) as f:
                self.epochs = json.load(f)
        return list(self.epochs)

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.time()

    def on_epoch_end(self, epoch, logs=None):
        row = {k: float(v) for k, v in (logs or {}).items()}
        row["seconds"] = time.time() - self._t           # wall time of the epoch, validation included
        self.epochs = self.epochs[:epoch] + [row]
        tf.io.gfile.makedirs(os.path.dirname(self.path))
        tmp = self.path + ".tmp"
        with tf.io.gfile.GFile(tmp, "w") as f:
            json.dump(self.epochs, f)
        tf.io.gfile.rename(tmp, self.path, overwrite=True)


PROGRESS_LOGGER = "synthdetect.progress"   # pipeline/runner.py prints these records on the terminal


class EpochProgress(keras.callbacks.Callback):
    """One line per epoch for the person running the pipeline:
    `Trainer_vgg16_finetune epoch 3/10 loss 0.301 val AUC 0.943 (12s, ETA 1m24s)`."""

    def __init__(self, component: str, epochs: int):
        super().__init__()
        self.component, self.total = component, epochs
        self._t0 = self._start = 0.0
        self._done = 0

    def on_train_begin(self, logs=None):
        self._t0 = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self._done += 1
        took = time.time() - self._start
        per = (time.time() - self._t0) / self._done
        eta = per * (self.total - epoch - 1)
        val = f" val AUC {logs['val_auc']:.4f}" if "val_auc" in logs else ""
        acc = f" val accuracy {logs['val_accuracy']:.4f}" if "val_accuracy" in logs else ""
        stdlib_logging.getLogger(PROGRESS_LOGGER).info(
            "%s epoch %d/%d loss %.4f%s%s (%s, ETA %s)", self.component, epoch + 1, self.total,
            logs.get("loss", float("nan")), val, acc, _duration(took), _duration(eta))


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def best_epoch(history: dict) -> int | None:
    """The 1-based epoch with the highest eval AUC (the weights early stopping restores)."""
    aucs = history.get("val_auc") or []
    return int(max(range(len(aucs)), key=lambda i: aucs[i])) + 1 if aucs else None


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
                            training=True, augment_prob=augment_prob, input_mode=m.input_mode,
                            input_filter=m.input_filter)
    # validation during fit: the evaluation input (crop mode: the centre crop; the exported
    # signatures average eval_crops crops)
    eval_ds = make_dataset(fn_args.eval_files, spec, m.image_size, m.batch_size, False, m.seed, m.deterministic,
                           input_mode=m.input_mode, input_filter=m.input_filter)
    decay_steps = None
    if m.lr_schedule == "cosine":  # the schedule needs the real step count: count the records once
        n_train = sum(1 for _ in tf.data.TFRecordDataset(match_files(fn_args.train_files), compression_type="GZIP"))
        decay_steps = m.epochs * max(1, -(-n_train // m.batch_size))

    with strategy.scope():
        model = build_model(m.image_size, weights=m.weights, dense_units=m.dense_units, dropout=m.dropout,
                            learning_rate=m.learning_rate, l2=m.l2, label_smoothing=m.label_smoothing,
                            lr_schedule=m.lr_schedule, decay_steps=decay_steps, xla=m.xla)
    logging.info("training %s: %d params, weights=%s, %d epochs, batch %d, %dpx, strategy %s (%d replicas), "
                 "augmentation p=%s, input %s (eval crops %d, filter %s)", variant, model.count_params(), m.weights,
                 m.epochs, m.batch_size, m.image_size, m.strategy, strategy.num_replicas_in_sync,
                 augment_prob, m.input_mode, m.eval_crops, m.input_filter)
    ckpt = checkpoint_dir(fn_args, variant, m)
    journal = EpochJournal(ckpt)
    resumed = journal.load()
    if resumed:
        logging.info("resuming %s from its checkpoint %s after epoch %d", variant, ckpt, len(resumed))
    callbacks = [keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir),
                 # weights, optimizer and epoch saved after every epoch, restored by a rerun with the same
                 # data and settings (the folder is keyed on both); deleted when training ends
                 keras.callbacks.BackupAndRestore(ckpt, save_freq="epoch", delete_checkpoint=False),
                 journal,
                 EpochProgress(f"Trainer_{variant}", m.epochs)]
    if m.early_stopping_patience > 0:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", restore_best_weights=True,
                                                       patience=m.early_stopping_patience))
    keras.utils.disable_interactive_logging()  # epoch lines go to the run log, not over the progress bar
    model.fit(train_ds, validation_data=eval_ds, epochs=m.epochs, verbose=2, callbacks=callbacks)
    keras.mixed_precision.set_global_policy("float32")
    epochs = journal.epochs
    history = {k: [float(e[k]) for e in epochs if k in e] for k in epochs[-1]} if epochs else {}
    best = best_epoch(history)

    model.save(fn_args.serving_model_dir, save_format="tf",
               signatures=_signatures(model, tf_transform_output, m.image_size, m.input_mode, m.eval_crops,
                                      m.input_filter))
    extra = os.path.join(fn_args.serving_model_dir, os.path.dirname(HISTORY_PATH))
    tf.io.gfile.makedirs(extra)
    with tf.io.gfile.GFile(os.path.join(fn_args.serving_model_dir, HISTORY_PATH), "w") as f:
        json.dump({"variant": variant, "config": {**m.model_dump(), "variant": variant},
                   "history": history, "best_epoch": best, "resumed_after_epoch": len(resumed),
                   "stopped_early": bool(m.early_stopping_patience and len(epochs) < m.epochs)}, f, indent=2)
    tf.io.gfile.rmtree(ckpt)   # the model is saved: the checkpoint has served
