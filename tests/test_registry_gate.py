"""The release gate end to end without training: real TFMA Evaluator, ReleaseCheck and
RegistryPusher components (LocalDagRunner) on an eval split made by the ingestion code, with small
hand-written SavedModels as candidate and baseline.

A sabotaged (constant-output) candidate and a fragile one (right only on clean images) are not
blessed and add no version; a good candidate is pushed with model.json filled in."""
import hashlib
import json
from pathlib import Path

import pytest

from components.evaluator.eval_config import make_eval_config
from components.registry.component import RegistryPusher
from components.registry.store import LocalRegistry
from components.release_check.component import ReleaseCheck
from schemas.config import IngestConfig, ThresholdConfig
from tests.tiny_models import tiny_model
from tests.tiny_models import N_PER_CLASS, make_eval_examples

THRESHOLDS = ThresholdConfig()  # the defaults: accuracy >= 0.9, AUC >= 0.95, gains >= 0, drop <= 0.1


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> Path:
    return make_eval_examples(tmp_path_factory.mktemp("examples"))


def _run_gate(tmp_path: Path, examples: Path, candidate: str, registry: Path, run_id: str,
              thresholds: ThresholdConfig = THRESHOLDS, holdout_sets: tuple[str, ...] = ()) -> None:
    from tfx import v1 as tfx
    from tfx.dsl.compiler import compiler, constants
    from tfx.orchestration.portable import runtime_parameter_utils
    from tfx.types import standard_artifacts

    models = tmp_path / "models"
    cand = tiny_model(models / "candidate" / "Format-Serving", candidate).parent
    base = tiny_model(models / "baseline" / "Format-Serving", "constant").parent
    splits = ["eval"] + [f"holdout_{h}" for h in holdout_sets]
    ex = tfx.dsl.Importer(source_uri=str(examples), artifact_type=standard_artifacts.Examples,
                          properties={"split_names": json.dumps(splits)}).with_id("examples")
    cm = tfx.dsl.Importer(source_uri=str(cand), artifact_type=standard_artifacts.Model).with_id("candidate")
    bm = tfx.dsl.Importer(source_uri=str(base), artifact_type=standard_artifacts.Model).with_id("baseline")
    evaluator = tfx.components.Evaluator(examples=ex.outputs["result"], model=cm.outputs["result"],
                                         baseline_model=bm.outputs["result"], example_splits=splits,
                                         eval_config=make_eval_config(thresholds))
    check = ReleaseCheck(examples=ex.outputs["result"], model=cm.outputs["result"],
                         baseline_model=bm.outputs["result"], evaluation=evaluator.outputs["evaluation"],
                         tfma_blessing=evaluator.outputs["blessing"],
                         thresholds_json=json.dumps(thresholds.model_dump()),
                         holdout_sets_json=json.dumps(list(holdout_sets)))
    pusher = RegistryPusher(model=cm.outputs["result"], model_blessing=check.outputs["blessing"],
                            release_check=check.outputs["check"], examples=ex.outputs["result"],
                            registry=str(registry), model_name="vgg16_finetune", pipeline_name="gate-test",
                            ingest=IngestConfig().__dict__)
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="gate-test", pipeline_root=str(tmp_path / "root"),
        components=[ex, cm, bm, evaluator, check, pusher],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "mlmd.sqlite")),
        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    ir = compiler.Compiler().compile(pipeline)
    runtime_parameter_utils.substitute_runtime_parameter(ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
    tfx.orchestration.LocalDagRunner().run_with_ir(ir)


def _check(tmp_path: Path) -> dict:
    [path] = (tmp_path / "root").glob("ReleaseCheck/check/*/release_check.json")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("registry") / "reg"


def test_good_candidate_is_blessed_and_pushed_with_model_json(tmp_path, examples, registry):
    _run_gate(tmp_path, examples, "good", registry, run_id="run-good")
    check = _check(tmp_path)
    assert check["blessed"] is True, check["reasons"]
    reg = LocalRegistry(registry)
    assert reg.versions() == ["v1"] and reg.aliases() == {"latest": "v1", "production": "v1"}
    meta = reg.model_json("production")
    assert meta["version"] == "v1" and meta["pipeline"]["run_id"] == "run-good" and meta["created_at"]
    assert meta["metrics"]["candidate"]["binary_accuracy"] == pytest.approx(1.0)
    assert meta["metrics"]["baseline"]["binary_accuracy"] == pytest.approx(0.5)
    assert meta["metrics"]["candidate"]["auc"] > 0.99 and meta["metrics"]["baseline"]["example_count"] == 20
    assert meta["thresholds"]["min_accuracy"] == 0.9 and meta["thresholds"]["max_robustness_drop"] == 0.1
    digest = hashlib.sha256((examples / "ingest_summary.json").read_bytes()).hexdigest()
    assert meta["data"]["fingerprint"] == f"sha256:{digest}"
    # calibrated on real images: at most 5% of the 10 real images (i.e. none) score above it
    cal = meta["calibration"]
    assert 0 < meta["threshold"] == cal["threshold"] <= 1 and cal["fpr"] == 0 and cal["tpr"] == 1.0
    assert cal["n_real"] == N_PER_CLASS and "tpr_at_0.5" in cal
    assert set(meta["robustness"]["perturbations"]) == {"jpeg_q95", "jpeg_q75", "jpeg_q50", "downscale_0.5",
                                                         "blur_sigma1"}
    assert meta["blessing"]["blessed"]
    assert any("binary_accuracy = 1.000 >= 0.9" in r for r in meta["blessing"]["reasons"])
    calib_asset = json.loads((reg.local_dir("v1") / "assets.extra" / "calibration.json").read_text())
    assert calib_asset["threshold"] == meta["threshold"]


@pytest.mark.parametrize("kind, reason", [("constant", "binary_accuracy = 0.500 < 0.9"),
                                          ("fragile", "accuracy drop under blur_sigma1")])
def test_bad_candidate_is_not_blessed_and_registry_gains_no_version(tmp_path, examples, registry, kind, reason):
    reg = LocalRegistry(registry)
    before = (reg.versions(), reg.aliases())
    _run_gate(tmp_path, examples, kind, registry, run_id=f"run-{kind}")
    check = _check(tmp_path)
    assert check["blessed"] is False
    assert any(reason in r for r in check["reasons"]), check["reasons"]
    if kind == "fragile":  # TFMA alone would have blessed it: clean accuracy is perfect
        assert check["tfma"]["validation_ok"] is True and check["robustness"]["passed"] is False
    assert (reg.versions(), reg.aliases()) == before
    [pushed] = (tmp_path / "root").glob("RegistryPusher/pushed_model/*")
    assert not (pushed / "push.json").exists()


def test_candidate_at_chance_on_a_held_out_set_is_refused_naming_the_set(tmp_path, registry):
    """Evaluated on eval plus two held-out splits: the in-distribution figures and the gate stay those of
    the eval split; the held-out gate refuses the candidate for the set it fails on, and only that one."""
    examples = make_eval_examples(tmp_path / "examples", holdout=True)
    reg = LocalRegistry(registry)
    before = (reg.versions(), reg.aliases())
    thresholds = ThresholdConfig(min_holdout_auc=0.8, max_generalisation_gap=0.1)
    _run_gate(tmp_path, examples, "good", registry, run_id="run-holdout", thresholds=thresholds,
              holdout_sets=("same_gen", "unseen_gen"))
    check = _check(tmp_path)
    # in distribution: exactly what the eval split gives (TFMA read 40 examples, gated 20)
    assert check["tfma"]["validation_ok"] is True
    assert check["tfma"]["metrics"]["candidate"]["example_count"] == 2 * N_PER_CLASS
    assert check["tfma"]["metrics"]["candidate"]["binary_accuracy"] == pytest.approx(1.0)
    assert {r["slice"] for r in check["tfma"]["slices"]["candidate"]} >= {"overall", "source=camera", "label=real"}
    assert not any("split" in r["slice"] or "gen-b" in r["slice"] for r in check["tfma"]["slices"]["candidate"])
    assert check["tfma"]["holdout"]["holdout_unseen_gen"]["candidate"]["metrics"]["example_count"] == 8
    assert check["tfma"]["holdout"]["holdout_same_gen"]["candidate"]["metrics"]["example_count"] == 12
    same, unseen = check["holdout"]["same_gen"]["candidate"], check["holdout"]["unseen_gen"]["candidate"]
    assert same["basis"] == "held-out set" and same["auc"] == pytest.approx(1.0) and same["gap"] == pytest.approx(0.0)
    assert unseen["basis"] == "held-out synthesized vs eval real"
    assert (unseen["n_synthesized"], unseen["n_real"]) == (8, 0)
    assert unseen["auc"] < 0.8 and unseen["gap"] > 0.1 and unseen["tpr_at_target_fpr"] < 0.5
    assert check["blessed"] is False
    failures = [r for r in check["reasons"] if r.startswith("held-out set")]
    assert failures and all("unseen_gen" in r for r in failures), check["reasons"]
    assert any("held-out set unseen_gen: auc" in r and "< 0.8" in r for r in failures)
    assert any("held-out set unseen_gen: generalisation gap" in r and "> 0.1" in r for r in failures)
    assert (reg.versions(), reg.aliases()) == before
