"""Champion/challenger (issue 23): the candidate against the model serving now, with real TFMA and
the real registry: ProductionModel resolves `production`, ProductionEvaluator (TFX's Evaluator)
compares the candidate with it on the same eval split and slices."""
import json
import shutil
from pathlib import Path

import pytest
import tensorflow as tf

from components.evaluator.eval_config import make_production_eval_config
from components.evaluator.production import COMPARED, NOT_COMPARED_FILE, PRODUCTION_VERSION, ProductionEvaluator
from components.registry.production import ProductionModel
from pipeline.pipeline import never_cache_registry_steps
from components.registry.store import LocalRegistry
from schemas.config import ThresholdConfig
from tests.tiny_models import _Tiny, tiny_model
from tests.tiny_models import make_eval_examples


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
             thresholds: ThresholdConfig | None = None):
    """ProductionModel + ProductionEvaluator on LocalDagRunner; returns the blessing artifact's folder
    and properties."""
    thresholds = thresholds or ThresholdConfig()
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
    props = {k: (v.int_value if v.HasField("int_value") else v.string_value)
             for k, v in blessing.custom_properties.items()}
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
    evaluation = tmp_path / "root" / "ProductionEvaluator" / "evaluation"
    result = tfma.load_validation_result(str(next(evaluation.glob("*"))))
    assert result.validation_ok == bool(blessed)
    if not blessed:   # the worse model calls the darkest synthesized image real: accuracy 0.95 < 1.0
        failed = {f.metric_key.name for s in result.metric_validations_per_slice for f in s.failures}
        assert failed == {"binary_accuracy"}


# ------------------------------------------------------------------ the whole gate, release included
class _Resized(_Tiny):
    """The brightness rule on the image resized to `size` first: a production model trained at another
    input size (its serving signatures decode at their own size, as the Trainer's do)."""

    def __init__(self, size: int):
        super().__init__("good")
        self.size = size

    def _score(self, encoded):
        img = tf.cast(tf.io.decode_image(encoded, channels=3, expand_animations=False), tf.float32)
        img = tf.image.resize(img[None], [self.size, self.size])[0]
        return tf.sigmoid((tf.reduce_mean(img) - 128.0) / 8.0)


def _release(tmp_path: Path, examples: Path, candidate: Path, registry: Path, promote: str = "auto",
             thresholds: ThresholdConfig | None = None, enable_cache: bool = False) -> dict:
    """Evaluator (vs the constant baseline), ProductionModel, ProductionEvaluator, ReleaseCheck and
    RegistryPusher as pipeline/pipeline.py wires them; returns release_check.json."""
    thresholds = thresholds or ThresholdConfig()
    from tfx import v1 as tfx
    from tfx.types import standard_artifacts

    from components.evaluator.eval_config import make_eval_config
    from components.registry.component import RegistryPusher
    from components.release_check.component import ReleaseCheck
    base = tiny_model(tmp_path / "baseline" / "Format-Serving", "constant").parent
    ex = tfx.dsl.Importer(source_uri=str(examples), artifact_type=standard_artifacts.Examples,
                          properties={"split_names": json.dumps(["eval"])}).with_id("examples")
    cm = tfx.dsl.Importer(source_uri=str(candidate), artifact_type=standard_artifacts.Model).with_id("candidate")
    bm = tfx.dsl.Importer(source_uri=str(base), artifact_type=standard_artifacts.Model).with_id("baseline")
    ev = tfx.components.Evaluator(examples=ex.outputs["result"], model=cm.outputs["result"],
                                  baseline_model=bm.outputs["result"], example_splits=["eval"],
                                  eval_config=make_eval_config(thresholds))
    prod = ProductionModel(registry=str(registry)).with_id("ProductionModel")
    pev = ProductionEvaluator(examples=ex.outputs["result"], model=cm.outputs["result"],
                              baseline_model=prod.outputs["model"], example_splits=["eval"],
                              eval_config=make_production_eval_config(thresholds)).with_id("ProductionEvaluator")
    check = ReleaseCheck(examples=ex.outputs["result"], model=cm.outputs["result"], baseline_model=bm.outputs["result"],
                         evaluation=ev.outputs["evaluation"], tfma_blessing=ev.outputs["blessing"],
                         thresholds_json=json.dumps(thresholds.model_dump()),
                         production_model=prod.outputs["model"], production_evaluation=pev.outputs["evaluation"],
                         production_blessing=pev.outputs["blessing"])
    pusher = RegistryPusher(model=cm.outputs["result"], model_blessing=check.outputs["blessing"],
                            release_check=check.outputs["check"], examples=ex.outputs["result"],
                            registry=str(registry), model_name="vgg16_finetune", pipeline_name="champion-test",
                            ingest={}, promote=promote)
    root = tmp_path / "root"
    from tfx.dsl.compiler import compiler
    ir = compiler.Compiler().compile(tfx.dsl.Pipeline(
        pipeline_name="champion-test", pipeline_root=str(root), components=[ex, cm, bm, ev, prod, pev, check, pusher],
        enable_cache=enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "mlmd.sqlite")),
        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"]))
    never_cache_registry_steps(ir)   # as `synthdetect run` compiles it
    tfx.orchestration.LocalDagRunner().run_with_ir(ir)
    # this run's (the newest: output folders are named by execution id)
    path = max(root.glob("ReleaseCheck/check/*/release_check.json"), key=lambda p: int(p.parent.name))
    return json.loads(path.read_text())


def _production(reg: LocalRegistry, model: Path) -> None:
    reg.push(str(model / "Format-Serving"), {"model_name": "vgg16_finetune"}, aliases=("latest", "production"))


def test_a_first_release_with_an_empty_registry_becomes_production(tmp_path, examples, models):
    reg = LocalRegistry(tmp_path / "registry")
    check = _release(tmp_path, examples, models["good"], reg.root)
    assert check["blessed"] is True, check["reasons"]
    assert check["production"]["compared"] is False
    assert any("no production model yet" in r for r in check["reasons"])
    assert reg.aliases() == {"latest": "v1", "production": "v1"}
    assert reg.model_json("v1")["compared_with_production"]["compared"] is False


def test_a_better_candidate_replaces_production_and_records_what_it_beat(tmp_path, examples, models):
    reg = LocalRegistry(tmp_path / "registry")
    _production(reg, models["worse"])
    check = _release(tmp_path, examples, models["good"], reg.root)
    assert check["blessed"] is True, check["reasons"]
    assert "binary_accuracy = 1.000 >= production v1 0.950 (min gain +0)" in check["reasons"]
    assert reg.aliases() == {"latest": "v2", "production": "v2"}
    record = reg.model_json("v2")["compared_with_production"]
    assert record["compared"] and record["version"] == "v1"
    assert record["metrics"]["production"]["binary_accuracy"] == pytest.approx(0.95)
    assert record["metrics"]["candidate"]["binary_accuracy"] == pytest.approx(1.0)


def test_a_candidate_worse_than_production_is_refused_and_production_stays(tmp_path, examples, models):
    """It clears every absolute bar (accuracy 0.95 >= 0.9, AUC 1.0 >= 0.95) and beats the baseline."""
    reg = LocalRegistry(tmp_path / "registry")
    _production(reg, models["good"])
    check = _release(tmp_path, examples, models["worse"], reg.root)
    assert check["tfma"]["validation_ok"] is True          # the absolute bars and the baseline: passed
    assert check["blessed"] is False
    assert check["reasons"] == ["binary_accuracy = 0.950 < production v1 1.000 (min gain +0)"]
    assert reg.versions() == ["v1"] and reg.aliases() == {"latest": "v1", "production": "v1"}
    [pushed] = (tmp_path / "root").glob("RegistryPusher/pushed_model/*")
    assert not (pushed / "push.json").exists()


def test_a_tolerance_lets_a_slightly_worse_candidate_through(tmp_path, examples, models):
    reg = LocalRegistry(tmp_path / "registry")
    _production(reg, models["good"])
    check = _release(tmp_path, examples, models["worse"], reg.root,
                     thresholds=ThresholdConfig(min_accuracy_gain_over_production=-0.1))
    assert check["blessed"] is True, check["reasons"]
    assert "binary_accuracy = 0.950 >= production v1 1.000 (min gain -0.1)" in check["reasons"]


def test_manual_promotion_pushes_with_latest_only(tmp_path, examples, models):
    reg = LocalRegistry(tmp_path / "registry")
    _production(reg, models["worse"])
    check = _release(tmp_path, examples, models["good"], reg.root, promote="manual")
    assert check["blessed"] is True
    assert reg.versions() == ["v1", "v2"] and reg.aliases() == {"latest": "v2", "production": "v1"}
    push = json.loads(next((tmp_path / "root").glob("RegistryPusher/pushed_model/*/push.json")).read_text())
    assert push["aliases"] == ["latest"] and push["promote"] == "manual"


def test_a_production_model_of_another_input_size_is_compared_at_its_own_size(tmp_path, examples, models):
    reg = LocalRegistry(tmp_path / "registry")
    m = _Resized(16)
    prod = tmp_path / "prod16" / "Format-Serving"
    tf.saved_model.save(m, str(prod), signatures={"serving_default": m.serve_examples.get_concrete_function(),
                                                  "serving_images": m.serve_images.get_concrete_function()})
    _production(reg, prod.parent)
    check = _release(tmp_path, examples, models["worse"], reg.root)
    assert check["production"]["compared"] is True
    assert check["production"]["metrics"]["production"]["binary_accuracy"] == pytest.approx(1.0)
    assert check["blessed"] is False and "production v1 1.000" in check["reasons"][0]


def test_an_identical_rerun_is_not_pushed_again(tmp_path, examples, models):
    """Issue 27.9: the same data, training config and ingestion again (enable_cache false: retrained)
    pushed a duplicate version and moved production to it. It is blessed (not worse than itself) and
    recorded as a duplicate of the version the registry holds; nothing pushed, aliases unchanged."""
    reg = LocalRegistry(tmp_path / "registry")
    for run in ("first", "again", "third"):
        (tmp_path / run).mkdir()
    first = _release(tmp_path / "first", examples, models["good"], reg.root)
    assert first["blessed"] is True and reg.versions() == ["v1"]
    reg.set_alias("production", "v1")   # as after a rollback: production must stay wherever it is
    again = _release(tmp_path / "again", examples, models["good"], reg.root)
    assert again["blessed"] is True, again["reasons"]
    assert reg.versions() == ["v1"] and reg.aliases() == {"latest": "v1", "production": "v1"}
    [push] = (tmp_path / "again" / "root").glob("RegistryPusher/pushed_model/*/push.json")
    record = json.loads(push.read_text())
    assert record["duplicate_of"] == "v1" and record["version"] is None
    assert record["release_key"] == reg.model_json("v1")["release_key"]
    # other data is another model: pushed as v2
    other = tmp_path / "other-examples"
    shutil.copytree(examples, other)
    summary = json.loads((other / "ingest_summary.json").read_text())
    (other / "ingest_summary.json").write_text(json.dumps({**summary, "note": "another ingestion"}))
    third = _release(tmp_path / "third", other, models["good"], reg.root)
    assert third["blessed"] is True and reg.versions() == ["v1", "v2"]


def test_the_registry_steps_are_never_cached(tmp_path, examples, models):
    """Issue 27.7: with enable_cache every step was reused, RegistryPusher too: a rerun after the
    registry changed reported the earlier push and pushed nothing. ProductionModel and RegistryPusher
    always run; the steps after ProductionModel run again; the Evaluator before them is reused."""
    reg = LocalRegistry(tmp_path / "registry")
    first = _release(tmp_path, examples, models["good"], reg.root, enable_cache=True)
    assert first["blessed"] is True and reg.versions() == ["v1"]
    shutil.rmtree(reg.root)          # the registry was emptied (or moved) since
    again = _release(tmp_path, examples, models["good"], reg.root, enable_cache=True)
    assert again["blessed"] is True and LocalRegistry(reg.root).versions() == ["v1"]   # pushed again
    assert len(list((tmp_path / "root").glob("RegistryPusher/pushed_model/*"))) == 2
    assert len(list((tmp_path / "root").glob("ProductionModel/model/*"))) == 2
    assert len(list((tmp_path / "root").glob("Evaluator/evaluation/*"))) == 1      # cached
