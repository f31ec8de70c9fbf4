"""The whole pipeline through the CLI, on the bundled sample at tiny image size (CI runs this)."""
import glob
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from components.registry.store import LocalRegistry
from tests.helpers import SAMPLE, cli, tiny_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]   # the shared run is built by the first test


def run_pipeline(tmp_path: Path, thresholds: dict, expect_exit: int = 0, *args: str) -> dict:
    """One `synthdetect run --json`; its exit code must be `expect_exit` (0: blessed and pushed, 3: refused)."""
    path = tiny_config(tmp_path, "e2e.yaml", thresholds=thresholds)
    out = cli("run", "--config", path, "--json", *args, cwd=tmp_path)
    assert out.returncode == expect_exit, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    return {**json.loads(out.stdout), "_stderr": out.stderr}


def test_pipeline_runs_end_to_end_and_pushes_a_working_model(blessed_run, tmp_path):
    rep, run_dir = blessed_run["report"], blessed_run["tmp"]
    # piped stderr (a CI log, `make run | tee`): each progress line whole, never wrapped at 80 columns
    data = re.escape(str(blessed_run["data"]))
    line = rf"^run {rep['run_id']}: 85 input files from {data}; 12 components; log: \S+\.log$"
    assert re.search(line, blessed_run["stderr"], re.M), blessed_run["stderr"][:2000]
    # ingestion: every sample file accounted for, TFRecords in both splits
    ingest = rep["ingest"]
    n_files = sum(1 for p in blessed_run["data"].rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    assert ingest["inputs"] == n_files == 85          # the 80 sample files and the 5 curation cases
    # the empty file and the one that is not an image quarantined, the exact and the near duplicate dropped
    assert (ingest["quarantined"], ingest["exact_duplicates"], ingest["near_duplicates"]) == (2, 1, 1)
    assert ingest["written"] + 4 == ingest["inputs"] and ingest["accounted_for"]
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
    assert rep["pushed_to"] and rep["pushed_to"].startswith(str(run_dir / "registry"))
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
    reg = LocalRegistry(run_dir / "registry")
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
    out = cli("report", "--config", blessed_run["config"], "--out", tmp_path / "report", cwd=run_dir, timeout=300)
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
    out = cli("predict", "--model", "registry:production", "--config", blessed_run["config"], *files, cwd=tmp_path,
              timeout=300)
    assert out.returncode == 4, out.stderr[-3000:]   # bad.png could not be scored; every line is written
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [x["path"] for x in lines] == [str(f) for f in files]
    assert all(0 <= x["p_synthesized"] <= 1 and x["model_version"] == "v1" for x in lines[:3])
    assert lines[-1]["error"] and lines[-1]["p_synthesized"] is None


# A refused run through the whole CLI (exit 3, nothing pushed, the decision kept by report/runs --json)
# is tests/test_runs_interrupted.py's resumed run: refused by its held-out gate.
REFUSING = {"min_accuracy": 1.0, "min_auc": 1.0, "min_accuracy_gain": 0.5, "min_auc_gain": 0.5}


@pytest.mark.slow   # a second whole run; the decision -> exit code table is in tests/test_cli_errors.py
def test_allow_unblessed_exits_0_for_an_exploratory_run(tmp_path):
    rep = run_pipeline(tmp_path, REFUSING, 0, "--allow-unblessed")
    assert rep["blessed"] is False and rep["pushed_to"] is None
    assert "NOT BLESSED: nothing pushed (exit 0, --allow-unblessed)" in rep["_stderr"]
