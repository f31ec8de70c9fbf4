"""`synthdetect runs` and `runs show` after one real local run (32 px, 1 epoch, on data/sample)."""
import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.helpers import cli, cli_in_process

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]   # the shared run is built by the first test
COMPONENTS = ("ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "Transform",
              "Trainer_vgg16_finetune", "Trainer_baseline", "Evaluator")


def _cli(*args, cwd):
    """In this process: `runs` only reads (the one-line errors below go through the real executable)."""
    return cli_in_process(*args, cwd=cwd)


@pytest.fixture
def local_run(blessed_run):
    """The session's shared run (tests/conftest.py): its folder, config and `run --json` report."""
    return blessed_run["tmp"], blessed_run["config"], blessed_run["report"]


def test_runs_lists_the_run_with_status_fingerprint_and_pushed_version(local_run):
    tmp, path, report = local_run
    out = _cli("runs", "--config", path, "--json", cwd=tmp)
    assert out.returncode == 0, out.stderr[-2000:]
    (run,) = json.loads(out.stdout)
    assert run["run_id"] == report["run_id"]
    assert run["status"] == "complete" and run["start"] and run["end"] and run["start"] <= run["end"]
    for c in COMPONENTS:
        assert run["components"][c] == "complete", c
    summary = Path(report["artifacts"]["ImageExampleGen.examples"], "ingest_summary.json").read_bytes()
    assert run["data_fingerprint"] == "sha256:" + hashlib.sha256(summary).hexdigest()
    assert run["blessed"] is True == report["blessed"]
    assert report["pushed_to"] and run["pushed_to"] == report["pushed_to"]
    assert run["pushed_version"] and run["pushed_version"] == (report.get("pushed_version")
                                                               or os.path.basename(report["pushed_to"]))
    # the table a person reads
    out = _cli("runs", "--config", path, cwd=tmp)
    assert out.returncode == 0 and "Traceback" not in out.stderr
    text = " ".join(out.stdout.split())
    assert report["run_id"] in text and "complete" in text and run["pushed_version"] in text


def test_runs_show_gives_the_lineage(local_run):
    tmp, path, report = local_run
    out = _cli("runs", "--config", path, "show", report["run_id"], "--json", cwd=tmp)
    assert out.returncode == 0, out.stderr[-2000:]
    lin = json.loads(out.stdout)
    examples = report["artifacts"]["ImageExampleGen.examples"]
    assert lin["data"]["examples"] == examples
    assert lin["data"]["ingest_summary"] == os.path.join(examples, "ingest_summary.json")
    assert lin["data"]["ingest"]["written"] == report["ingest"]["written"]
    assert {m["component"]: m["uri"] for m in lin["models"]} == {
        "Trainer_vgg16_finetune": report["artifacts"]["Trainer_vgg16_finetune.model"],
        "Trainer_baseline": report["artifacts"]["Trainer_baseline.model"]}
    # the registry's production model (none: the registry was empty) is listed apart from what the run trained
    assert lin["production_model"] == {"uri": report["artifacts"]["ProductionModel.model"], "found": False,
                                       "version": None}
    assert sorted(a["uri"] for a in lin["evaluation"]["artifacts"]) == sorted(
        [report["artifacts"]["Evaluator.evaluation"], report["artifacts"]["ProductionEvaluator.evaluation"]])
    assert set(lin["evaluation"]["metrics"]) == {"candidate", "baseline"}   # no production model to compare
    assert lin["evaluation"]["production"]["compared"] is False
    assert {b["component"]: b.get("compared") for b in lin["evaluation"]["blessings"]}["ProductionEvaluator"] is False
    assert lin["evaluation"]["blessed"] is True
    assert lin["registry"] == {"pushed": True, "version": lin["registry"]["version"],
                               "destination": report["pushed_to"]} and lin["registry"]["version"]
    steps = {s["component"]: s for s in lin["steps"]}
    assert "ImageExampleGen.examples" in steps["StatisticsGen"]["inputs"]
    assert "Trainer_vgg16_finetune.model" in steps["Evaluator"]["inputs"]
    out = _cli("runs", "--config", path, "show", report["run_id"], cwd=tmp)
    assert out.returncode == 0 and f"run {report['run_id']}: complete" in out.stdout
    assert "registry:   version" in out.stdout
    assert "ProductionEvaluator: not compared (no production model)" in out.stdout
    assert "production: none yet in" in out.stdout


def test_runs_show_latest_and_without_a_run_is_the_newest_run(local_run):
    tmp, path, rep = local_run
    for args in (["show", "latest", "--json"], ["show", "--json"]):
        out = _cli("runs", "--config", path, *args, cwd=tmp)
        assert out.returncode == 0, out.stderr[-2000:]
        assert json.loads(out.stdout)["run_id"] == rep["run_id"]
    # the options also after `show` (issue 27.7: this was exit 2, "no such option")
    out = _cli("runs", "show", "latest", "--config", path, "--json", cwd=tmp)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["run_id"] == rep["run_id"]


def test_unknown_run_and_missing_database_are_one_line(local_run, tmp_path):
    tmp, path, _ = local_run
    out = cli("runs", "--config", path, "show", "no-such-run", cwd=tmp)
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith("error: run 'no-such-run' not found")
    out = cli("runs", "--config", path, "--set", f"metadata_path={tmp_path / 'none.sqlite'}", cwd=tmp)
    assert out.returncode != 0 and out.stderr.startswith("error: no ML Metadata database")
