"""Champion/challenger (issue 23): the candidate against the model serving now, with real TFMA and
the real registry: ProductionModel resolves `production`, ProductionEvaluator (TFX's Evaluator)
compares the candidate with it on the same eval split and slices."""
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from components.evaluator.eval_config import make_production_eval_config
from components.evaluator.production import COMPARED, NOT_COMPARED_FILE, PRODUCTION_VERSION, ProductionEvaluator
from components.registry.production import ProductionModel
from components.registry.store import LocalRegistry
from schemas.config import ThresholdConfig
from tests.test_registry import _Tiny, tiny_model
from tests.test_registry_gate import make_eval_examples


class _AtThreshold(_Tiny):
    """The brightness rule with its decision point at `threshold` (mean pixel value): placed among the
    synthesized images' brightness, it calls the darkest of them real (worse accuracy, same ranking)."""

    def __init__(self, threshold: float):
        super().__init__("good")
        self.threshold = threshold

    def _score(self, encoded):
        img = tf.cast(tf.io.decode_image(encoded, channels=3, expand_animations=False), tf.float32)
        return tf.sigmoid((tf.reduce_mean(img) - self.threshold) / 0.05)


def model_at_threshold(path: Path, threshold: float) -> Path:
    m = _AtThreshold(threshold)
    tf.saved_model.save(m, str(path), signatures={
        "serving_default": m.serve_examples.get_concrete_function(),
        "serving_images": m.serve_images.get_concrete_function()})
    return path


def synthesized_brightness(examples: Path) -> list[float]:
    out = []
    for rec in tf.data.TFRecordDataset(str(next((examples / "Split-eval").glob("*.gz"))), "GZIP"):
        ex = tf.train.Example.FromString(rec.numpy())
        if ex.features.feature["label"].bytes_list.value[0] == b"synthesized":
            img = tf.io.decode_image(ex.features.feature["image_raw"].bytes_list.value[0], channels=3)
            out.append(float(tf.reduce_mean(tf.cast(img, tf.float32))))
    return sorted(out)


def _compare(tmp_path: Path, examples: Path, candidate: Path, registry: Path,
             thresholds: ThresholdConfig = ThresholdConfig()):
    """ProductionModel + ProductionEvaluator on LocalDagRunner; returns the blessing artifact's folder
    and properties."""
    from tfx import v1 as tfx
    from tfx.types import standard_artifacts
    ex = tfx.dsl.Importer(source_uri=str(examples), artifact_type=standard_artifacts.Examples,
                          properties={"split_names": json.dumps(["eval"])}).with_id("examples")
    cm = tfx.dsl.Importer(source_uri=str(candidate), artifact_type=standard_artifacts.Model).with_id("candidate")
    prod = ProductionModel(registry=str(registry)).with_id("ProductionModel")
    ev = ProductionEvaluator(examples=ex.outputs["result"], model=cm.outputs["result"],
                             baseline_model=prod.outputs["model"], example_splits=["eval"],
                             eval_config=make_production_eval_config(thresholds)).with_id("ProductionEvaluator")
    root = tmp_path / "root"
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="champion-test", pipeline_root=str(root), components=[ex, cm, prod, ev],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "mlmd.sqlite")),
        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"]))
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = str(tmp_path / "mlmd.sqlite")
    store = metadata_store.MetadataStore(cfg)
    [blessing] = store.get_artifacts_by_type("ModelBlessing")
    props = {k: (v.int_value if v.HasField("int_value") else v.string_value) for k, v in blessing.custom_properties.items()}
    return Path(blessing.uri), props


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> Path:
    return make_eval_examples(tmp_path_factory.mktemp("examples"))


@pytest.fixture(scope="module")
def models(tmp_path_factory, examples) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    darkest = synthesized_brightness(examples)[0]
    return {"good": tiny_model(root / "good" / "Format-Serving", "good").parent,
            "worse": model_at_threshold(root / "worse" / "Format-Serving", darkest + 0.01).parent}


def test_with_an_empty_registry_nothing_is_compared(tmp_path, examples, models):
    uri, props = _compare(tmp_path, examples, models["good"], tmp_path / "registry")
    assert props[COMPARED] == 0 and (uri / NOT_COMPARED_FILE).is_file()
    assert "blessed" not in props


@pytest.mark.parametrize("candidate, blessed", [("good", 1), ("worse", 0)])
def test_the_candidate_is_measured_against_production_with_tfma(tmp_path, examples, models, candidate, blessed):
    reg = LocalRegistry(tmp_path / "registry")
    reg.push(str(models["good"] / "Format-Serving"), {"model_name": "m"}, aliases=("latest", "production"))
    uri, props = _compare(tmp_path, examples, models[candidate], reg.root)
    assert props[COMPARED] == 1 and props[PRODUCTION_VERSION] == "v1"
    assert props["blessed"] == blessed
    import tensorflow_model_analysis as tfma
    result = tfma.load_validation_result(str(next((tmp_path / "root" / "ProductionEvaluator" / "evaluation").glob("*"))))
    assert result.validation_ok == bool(blessed)
    if not blessed:   # the worse model calls the darkest synthesized image real: accuracy 0.95 < 1.0
        failed = {f.metric_key.name for s in result.metric_validations_per_slice for f in s.failures}
        assert failed == {"binary_accuracy"}
