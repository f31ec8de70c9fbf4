"""The whole pipeline through the CLI, on the bundled sample at tiny image size (CI runs this)."""
import glob
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml

from components.registry.store import LocalRegistry
from tests.conftest import REPO, SAMPLE

pytestmark = pytest.mark.e2e
CLI = str(Path(sys.executable).parent / "synthdetect")


def run_pipeline(tmp_path: Path, thresholds: dict, expect_exit: int = 0, *args: str) -> dict:
    """One `synthdetect run --json`; its exit code must be `expect_exit` (0: blessed and pushed, 3: refused)."""
    cfg = yaml.safe_load((REPO / "configs" / "local.yaml").read_text())
    cfg.update(pipeline_root=str(tmp_path / "root"), metadata_path=str(tmp_path / "mlmd.sqlite"),
               registry=str(tmp_path / "registry"), thresholds=thresholds)
    cfg["data"]["input"] = str(SAMPLE)
    cfg["model"].update(image_size=32, epochs=1, batch_size=16, weights="none", deterministic=True)
    path = tmp_path / "e2e.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([CLI, "run", "--config", str(path), "--json", *args], capture_output=True, text=True,
                         timeout=900, cwd=tmp_path)
    assert out.returncode == expect_exit, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    return {**json.loads(out.stdout), "_stderr": out.stderr}


def test_pipeline_runs_end_to_end_and_pushes_a_working_model(tmp_path):
    rep = run_pipeline(tmp_path, {"min_accuracy": 0.0, "min_auc": 0.0,
                                  "min_accuracy_gain": -1.0, "min_auc_gain": -1.0, "max_robustness_drop": 1.0})
    # ingestion: every sample file accounted for, TFRecords in both splits
    ingest = rep["ingest"]
    n_files = sum(1 for p in SAMPLE.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    assert ingest["inputs"] == n_files == 80
    assert ingest["written"] + ingest["quarantined"] == ingest["inputs"] and ingest["accounted_for"]
    examples = rep["artifacts"]["ImageExampleGen.examples"]
    for split in ("train", "eval"):
        assert glob.glob(os.path.join(examples, f"Split-{split}", "*.gz")), split
    n_records = sum(1 for f in glob.glob(os.path.join(examples, "Split-*", "*.gz"))
                    for _ in tf.data.TFRecordDataset(f, compression_type="GZIP"))
    assert n_records == ingest["written"]
    assert glob.glob(os.path.join(rep["artifacts"]["StatisticsGen.statistics"], "Split-*", "FeatureStats.pb"))
    assert rep["anomalies"] == []
    # evaluation: accuracy and AUC for both models, on the same eval examples
    for model in ("candidate", "baseline"):
        m = rep["metrics"][model]
        assert 0.0 <= m["binary_accuracy"] <= 1.0 and 0.0 <= m["auc"] <= 1.0
        assert m["example_count"] > 0
    assert rep["metrics"]["candidate"]["example_count"] == rep["metrics"]["baseline"]["example_count"]
    assert rep["blessed"] is True and rep["validation_failures"] == []
    # push: a version under the registry that loads and scores sample images
    assert rep["pushed_to"] and rep["pushed_to"].startswith(str(tmp_path / "registry"))
    loaded = tf.saved_model.load(rep["pushed_to"])
    images = [p.read_bytes() for p in sorted(SAMPLE.glob("*/*/*"))[:2] + sorted(SAMPLE.glob("synthesized/*/*.png"))[:1]]
    p = loaded.signatures["serving_images"](images=tf.constant(images))["p_synthesized"].numpy()
    assert p.shape == (3, 1) and np.all((p >= 0) & (p <= 1))
    # the tf.Example signature (TFMA's) gives the same score for the same stored image
    record = next(iter(tf.data.TFRecordDataset(glob.glob(os.path.join(examples, "Split-eval", "*.gz")),
                                               compression_type="GZIP")))
    ex = tf.train.Example.FromString(record.numpy())
    via_example = loaded.signatures["serving_default"](examples=tf.constant([record.numpy()]))["p_synthesized"]
    via_bytes = loaded.signatures["serving_images"](
        images=tf.constant([ex.features.feature["image_raw"].bytes_list.value[0]]))["p_synthesized"]
    np.testing.assert_allclose(via_example.numpy(), via_bytes.numpy(), rtol=1e-5)
    history = json.loads(Path(rep["pushed_to"], "assets.extra", "training_history.json").read_text())
    assert history["variant"] == "vgg16_finetune" and len(history["history"]["loss"]) == 1
    # registry: v1 with model.json filled in from this run, both aliases on it
    reg = LocalRegistry(tmp_path / "registry")
    assert rep["pushed_version"] == "v1" and reg.versions() == ["v1"]
    assert reg.aliases() == {"latest": "v1", "production": "v1"}
    meta = reg.model_json("production")
    assert meta["pipeline"]["run_id"] == rep["run_id"] and meta["blessing"]["blessed"] is True
    assert meta["metrics"]["candidate"]["binary_accuracy"] == \
        pytest.approx(rep["metrics"]["candidate"]["binary_accuracy"])
    assert meta["metrics"]["baseline"]["auc"] == pytest.approx(rep["metrics"]["baseline"]["auc"])
    summary = Path(examples, "ingest_summary.json").read_bytes()
    assert meta["data"]["fingerprint"] == "sha256:" + hashlib.sha256(summary).hexdigest()
    assert meta["threshold"] == meta["calibration"]["threshold"] == rep["calibration"]["candidate"]["threshold"]
    assert meta["calibration"]["fpr"] <= 0.05
    assert set(rep["robustness"]["perturbations"]) == set(meta["robustness"]["perturbations"])
    # the report: Markdown referencing non-trivial PNGs
    out = subprocess.run([CLI, "report", "--config", str(tmp_path / "e2e.yaml"), "--out", str(tmp_path / "report")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    md = (tmp_path / "report" / "report.md").read_text()
    pngs = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)
    assert {"confusion_matrices.png", "roc_curves.png", "training_curves.png", "calibration.png",
            "robustness.png"} <= set(pngs)
    assert all((tmp_path / "report" / f).stat().st_size > 10_000 for f in pngs)
    assert "**BLESSED**, pushed as `v1`" in md and "| label=real |" in md
    # batch scoring with the pushed model: one line per file, a corrupt one included
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    files = sorted(SAMPLE.glob("real/*/*"))[:3] + [tmp_path / "bad.png"]
    out = subprocess.run([CLI, "predict", "--model", "registry:production", "--config", str(tmp_path / "e2e.yaml"),
                          *map(str, files)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 4, out.stderr[-3000:]   # bad.png could not be scored; every line is written
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [x["path"] for x in lines] == [str(f) for f in files]
    assert all(0 <= x["p_synthesized"] <= 1 and x["model_version"] == "v1" for x in lines[:3])
    assert lines[-1]["error"] and lines[-1]["p_synthesized"] is None


REFUSING = {"min_accuracy": 1.0, "min_auc": 1.0, "min_accuracy_gain": 0.5, "min_auc_gain": 0.5}


def test_unearned_model_is_not_pushed(tmp_path):
    rep = run_pipeline(tmp_path, REFUSING, 3)   # exit 3: the release gate refused the model
    assert rep["blessed"] is False
    assert any("binary_accuracy" in f for f in rep["validation_failures"])
    assert rep["pushed_to"] is None
    assert not (tmp_path / "registry").exists() or not any((tmp_path / "registry").rglob("saved_model.pb"))
    assert LocalRegistry(tmp_path / "registry").versions() == []
    assert "NOT BLESSED: nothing pushed (exit 3; --allow-unblessed exits 0)" in rep["_stderr"]
    # the decision and its reasons stay in report --json and runs --json (which exit 0: they only read)
    for args in (["report", "--json"], ["runs", "--json"]):
        out = subprocess.run([CLI, *args, "--config", str(tmp_path / "e2e.yaml")], capture_output=True, text=True,
                             timeout=300, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        got = json.loads(out.stdout)
        got = got[0] if isinstance(got, list) else got
        assert got["blessed"] is False and got["run_id"] == rep["run_id"]
        assert any("binary_accuracy" in f for f in got.get("validation_failures", got.get("reasons", [])))


@pytest.mark.slow   # a second whole run; the decision -> exit code table is in tests/test_cli_errors.py
def test_allow_unblessed_exits_0_for_an_exploratory_run(tmp_path):
    rep = run_pipeline(tmp_path, REFUSING, 0, "--allow-unblessed")
    assert rep["blessed"] is False and rep["pushed_to"] is None
    assert "NOT BLESSED: nothing pushed (exit 0, --allow-unblessed)" in rep["_stderr"]
