"""Tiny SavedModels with hand-written rules, and the labelled eval examples the release gate judges
them on (tests of the registry, the gate, champion/challenger, report, predict, curation)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from components.ingest.images import decode_file
from components.ingest.listing import ImageInput
from schemas.config import IngestConfig
from tests.helpers import SAMPLE


# tiny SavedModels: p_synthesized from a rule
class _Tiny(tf.Module):
    """p_synthesized from a hand-written rule on the decoded image:
    good: brightness (robust), fragile: pixel-to-pixel noise energy (destroyed by blur/JPEG),
    constant: 0.5 for everything (a sabotaged model)."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def _score(self, encoded):
        img = tf.cast(tf.io.decode_image(encoded, channels=3, expand_animations=False), tf.float32)
        if self.kind == "good":
            return tf.sigmoid((tf.reduce_mean(img) - 128.0) / 8.0)
        if self.kind == "fragile":
            energy = tf.reduce_mean(tf.abs(img[:, 1:, :] - img[:, :-1, :]))
            return tf.sigmoid((energy - 20.0) / 2.0)
        return tf.constant(0.5)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def serve_images(self, images):
        p = tf.map_fn(self._score, images, fn_output_signature=tf.float32)
        return {"p_synthesized": tf.reshape(p, [-1, 1])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        feats = tf.io.parse_example(examples, {"image_raw": tf.io.FixedLenFeature([], tf.string)})
        return self.serve_images(feats["image_raw"])


def tiny_model(path: Path, kind: str = "good") -> Path:
    """Writes a SavedModel (serving_default on tf.Examples, serving_images on bytes) to `path`."""
    m = _Tiny(kind)
    tf.saved_model.save(m, str(path), signatures={
        "serving_default": m.serve_examples.get_concrete_function(),
        "serving_images": m.serve_images.get_concrete_function()})
    extra = path / "assets.extra"
    extra.mkdir(exist_ok=True)
    (extra / "training_history.json").write_text(json.dumps(
        {"variant": kind, "config": {"image_size": 32},
         "history": {"loss": [0.7, 0.5], "val_loss": [0.72, 0.6], "accuracy": [0.5, 0.8], "val_accuracy": [0.5, 0.7]}}))
    return path


# eval examples: bright synthesized vs dark real PNGs, as ImageExampleGen writes them
N_PER_CLASS = 10


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8), "RGB").save(buf, "PNG")
    return buf.getvalue()


def _example(name: str, label: str, data: bytes, source: str, split: str) -> bytes:
    status, ex = decode_file(ImageInput(name, label, source=source, generator=source, content="objects"),
                             IngestConfig(), data)  # format neutralisation on, JPEG q95, as in the pipeline
    assert status == "ok"
    ex = getattr(ex, "example", ex)  # Decoded or tf.Example
    ex.features.feature["split"].bytes_list.value.append(split.encode())  # as ImageExampleGen writes it
    return ex.SerializeToString()


def _write_split(root: Path, split: str, records: list[bytes]) -> None:
    import tensorflow as tf
    (root / f"Split-{split}").mkdir(parents=True)
    with tf.io.TFRecordWriter(str(root / f"Split-{split}" / "data_tfrecord-00000-of-00001.gz"), "GZIP") as w:
        for r in records:
            w.write(r)


def _real(rng) -> bytes:
    ramp = np.linspace(30, 80, 48)[None, :, None] * np.ones((48, 48, 3))
    return _png(ramp + rng.normal(0, 1, ramp.shape))


def _synth(rng) -> bytes:
    return _png(np.clip(170 + rng.normal(0, 45, (48, 48, 3)), 0, 255))


def make_eval_examples(root: Path, holdout: bool = False) -> Path:
    """Eval split as ImageExampleGen writes it: synthesized = bright and noisy, real = dark and smooth.
    With `holdout`: two held-out splits, `holdout_same_gen` (both labels, made like the eval split)
    and `holdout_unseen_gen` (synthesized only, by a "generator" whose images are dark and smooth
    like the real ones: the brightness rule is at chance there)."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(N_PER_CLASS):
        records.append(_example(f"real/{i}.png", "real", _real(rng), "camera", "eval"))
        records.append(_example(f"synthesized/{i}.png", "synthesized", _synth(rng), "gen-a", "eval"))
    _write_split(root, "eval", records)
    n = len(records)
    if holdout:
        same = [_example(f"same/real/{i}.png", "real", _real(rng), "camera-b", "holdout_same_gen") for i in range(6)]
        same += [_example(f"same/synth/{i}.png", "synthesized", _synth(rng), "gen-a2", "holdout_same_gen")
                 for i in range(6)]
        unseen = [_example(f"unseen/{i}.png", "synthesized", _real(rng), "gen-b", "holdout_unseen_gen")
                  for i in range(8)]
        _write_split(root, "holdout_same_gen", same)
        _write_split(root, "holdout_unseen_gen", unseen)
        n += len(same) + len(unseen)
    (root / "ingest_summary.json").write_text(json.dumps({"inputs": n, "written": n}))
    return root


# the bundled sample through a real TFT graph (the Trainer's tests)
def sample_examples(n_per_label: int = 6) -> list[dict]:
    files = sorted(SAMPLE.glob("real/*/*"))[:n_per_label] + sorted(SAMPLE.glob("synthesized/*/*"))[:n_per_label]
    return [{"image_raw": [f.read_bytes()], "label_id": [0 if "/real/" in str(f) else 1]} for f in files]


def to_example(d):
    return tf.train.Example(features=tf.train.Features(feature={
        "image_raw": tf.train.Feature(bytes_list=tf.train.BytesList(value=[d["image_raw"]])),
        "label_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[d["label_id"]]))})).SerializeToString()


def transform_sample(tmp: Path):
    """A real TFT transform graph and GZIP TFRecords of transformed examples (one Beam pipeline) in
    `tmp`: (TFTransformOutput, the records' path, tmp). The `transformed` fixture (tests/conftest.py)."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    from components.transform.preprocessing import preprocessing_fn
    spec = {"image_raw": tf.io.FixedLenFeature([1], tf.string), "label_id": tf.io.FixedLenFeature([1], tf.int64)}
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(spec))
    with beam.Pipeline() as p, tft_beam.Context(temp_dir=str(tmp / "tmp")):
        raw = p | beam.Create(sample_examples())
        (data, _), transform_fn = (raw, metadata) | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn)
        transform_fn | tft_beam.WriteTransformFn(str(tmp / "transform"))
        (data | beam.Map(to_example)
         | beam.io.WriteToTFRecord(str(tmp / "data"), file_name_suffix=".gz", num_shards=1,
                                   shard_name_template=""))
    # TFX's Transform also stores the raw metadata, which the serving signatures parse with
    metadata_io.write_metadata(metadata, str(tmp / "transform" / tft.TFTransformOutput.RAW_METADATA_DIR))
    return tft.TFTransformOutput(str(tmp / "transform")), str(tmp / "data.gz"), tmp
