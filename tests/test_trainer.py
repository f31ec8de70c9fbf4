"""The Trainer's run_fn outside TFX: export, signatures, no train/serve skew, augmentation policy."""
import json
import types
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
import tf_keras as keras
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

from components.trainer.run_fn import make_dataset, run_fn
from components.transform.preprocessing import decode_images, preprocessing_fn
from schemas.config import PipelineConfig
from pipeline.pipeline import trainer_config
from tests.conftest import SAMPLE

SIZE = 32


def _examples(n_per_label: int = 6) -> list[dict]:
    files = sorted(SAMPLE.glob("real/*/*"))[:n_per_label] + sorted(SAMPLE.glob("synthesized/*/*"))[:n_per_label]
    return [{"image_raw": [f.read_bytes()], "label_id": [0 if "/real/" in str(f) else 1]} for f in files]


def _to_example(d):
    return tf.train.Example(features=tf.train.Features(feature={
        "image_raw": tf.train.Feature(bytes_list=tf.train.BytesList(value=[d["image_raw"]])),
        "label_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[d["label_id"]]))})).SerializeToString()


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    """A real TFT transform graph and GZIP TFRecords of transformed examples (one Beam pipeline)."""
    tmp = tmp_path_factory.mktemp("tft")
    spec = {"image_raw": tf.io.FixedLenFeature([1], tf.string), "label_id": tf.io.FixedLenFeature([1], tf.int64)}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    with beam.Pipeline() as p, tft_beam.Context(temp_dir=str(tmp / "tmp")):
        raw = p | beam.Create(_examples())
        (data, _), transform_fn = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn)
        transform_fn | tft_beam.WriteTransformFn(str(tmp / "transform"))
        (data | beam.Map(_to_example)
         | beam.io.WriteToTFRecord(str(tmp / "data"), file_name_suffix=".gz", num_shards=1,
                                   shard_name_template=""))
    # TFX's Transform also stores the raw metadata, which the serving signatures parse with
    metadata_io.write_metadata(metadata, str(tmp / "transform" / tft.TFTransformOutput.RAW_METADATA_DIR))
    return tft.TFTransformOutput(str(tmp / "transform")), str(tmp / "data.gz"), tmp


@pytest.fixture(scope="module")
def trained(transformed):
    out, path, tmp = transformed
    cfg = PipelineConfig.model_validate({"data": {"input": str(SAMPLE)}, "model": {
        "image_size": SIZE, "epochs": 2, "batch_size": 4, "weights": "none", "deterministic": True}})
    cc = trainer_config(cfg, "baseline")
    fn_args = types.SimpleNamespace(train_files=[path], eval_files=[path], transform_output=str(tmp / "transform"),
                                    serving_model_dir=str(tmp / "serving"), model_run_dir=str(tmp / "run"),
                                    custom_config=cc)
    run_fn(fn_args)
    return tf.saved_model.load(str(tmp / "serving")), out, path, tmp


def test_export_has_both_signatures_and_history(trained):
    model, _, _, tmp = trained
    assert {"serving_default", "serving_images"} <= set(model.signatures)
    hist = json.loads((tmp / "serving" / "assets.extra" / "training_history.json").read_text())
    assert hist["variant"] == "baseline" and hist["config"]["weights"] == "none"
    assert len(hist["history"]["loss"]) == 2 and "val_auc" in hist["history"]


def test_no_train_serve_skew(trained):
    """The same image through serving_images and through the training input pipeline (augmentation
    off, i.e. the eval path) gives the same model input, hence the same score."""
    model, out, path, tmp = trained
    keras_model = keras.models.load_model(str(tmp / "serving"))
    ds = make_dataset([path], out.transformed_feature_spec(), SIZE, 12, shuffle=False, seed=0, deterministic=True)
    images, _ = next(iter(ds))
    served = model.signatures["serving_images"](images=tf.constant([e["image_raw"][0] for e in _examples()]))
    direct = keras_model(images, training=False)
    np.testing.assert_allclose(served["p_synthesized"].numpy(), direct.numpy(), rtol=1e-4, atol=1e-5)
    # and the input tensors themselves agree with the serving-side decode
    np.testing.assert_allclose(images.numpy(), decode_images(
        tf.constant([e["image_raw"][0] for e in _examples()]), SIZE).numpy(), atol=1e-3)


def test_augmentation_hits_both_labels_and_only_training(transformed):
    out, path, _ = transformed
    spec = out.transformed_feature_spec()
    plain = make_dataset([path], spec, SIZE, 12, shuffle=False, seed=0, deterministic=True)
    again = make_dataset([path], spec, SIZE, 12, shuffle=False, seed=0, deterministic=True)
    aug = make_dataset([path], spec, SIZE, 12, shuffle=False, seed=0, deterministic=True, augment_prob=1.0)
    (x0, y0), (x1, _), (xa, ya) = next(iter(plain)), next(iter(again)), next(iter(aug))
    np.testing.assert_array_equal(x0.numpy(), x1.numpy())  # evaluation input is deterministic
    np.testing.assert_array_equal(y0.numpy(), ya.numpy())
    changed = np.abs(xa.numpy() - x0.numpy()).reshape(len(y0), -1).mean(axis=1) > 1.0
    labels = y0.numpy().ravel()
    assert changed[labels == 0].all() and changed[labels == 1].all()


def test_trainer_config_baseline_differs_only_by_weights(tmp_path):
    w = tmp_path / "w.h5"
    w.write_bytes(b"x")
    cfg = PipelineConfig.model_validate({"data": {"input": str(SAMPLE)}, "model": {"weights": str(w)}})
    cand, base = trainer_config(cfg, "vgg16_finetune"), trainer_config(cfg, "baseline")
    assert cand["weights"] == str(w) and base["weights"] == "none"
    assert {k: v for k, v in cand.items() if k not in ("weights", "variant")} == \
        {k: v for k, v in base.items() if k not in ("weights", "variant")}


def test_gaussian_blur_preserves_flat_images_and_smooths_noise():
    from components.transform.preprocessing import _gaussian_blur
    flat = tf.fill([40, 40, 3], 100.0)
    np.testing.assert_allclose(_gaussian_blur(flat, tf.constant(2.0)).numpy(), 100.0, rtol=1e-4)
    noise = tf.random.stateless_uniform([40, 40, 3], seed=[1, 2], maxval=255.0)
    blurred = _gaussian_blur(noise, tf.constant(2.0))
    assert blurred.shape == (40, 40, 3)
    assert float(tf.math.reduce_std(blurred)) < 0.3 * float(tf.math.reduce_std(noise))
