"""Issue 27.6: `ingest` on Dataflow checks its options before any work (no listing, no lock, no Beam
job): every missing option is named in one `error:` line; `--dry-run` prints the Beam options that
would be used. Nothing here talks to Google Cloud."""
import json
import time

from click.testing import CliRunner

from components.ingest.beam_args import dataflow_preflight
from pipeline.cli import main
from tests.conftest import SAMPLE

DATAFLOW = "--beam-arg=--runner=DataflowRunner"


def _ingest(tmp_path, *args):
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["ingest", "--input", str(SAMPLE), "--output", str(out), *args])
    return r, out


def test_dataflow_without_options_names_every_missing_one_before_any_work(tmp_path):
    t0 = time.time()
    r, out = _ingest(tmp_path, DATAFLOW)
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.output
    for option in ("--project", "--region", "--temp_location"):
        assert option in lines[0], lines[0]
    assert "inputs from" not in r.output          # nothing was listed
    assert not out.exists() and not (tmp_path / "out.lock").exists()
    assert time.time() - t0 < 60


def test_dataflow_names_only_what_is_missing_and_checks_gcs_locations():
    assert dataflow_preflight(["--runner=DataflowRunner", "--project=p", "--region=europe-west4",
                               "--temp_location=gs://b/tmp"]) == []
    # Beam uses either location for the other
    assert dataflow_preflight(["--runner=DataflowRunner", "--project=p", "--region=r",
                               "--staging_location=gs://b/staging"]) == []
    missing = dataflow_preflight(["--runner=DataflowRunner", "--project", "p", "--temp_location=/tmp/x"])
    assert [m.split()[0] for m in missing] == ["--region", "--temp_location"]
    assert "gs://" in missing[1]
    assert dataflow_preflight([]) == [] and dataflow_preflight(["--runner=DirectRunner"]) == []


def test_ingest_dry_run_prints_the_beam_options_and_does_nothing(tmp_path):
    r, out = _ingest(tmp_path, DATAFLOW, "--beam-arg=--project=p", "--beam-arg=--region=europe-west4",
                     "--beam-arg=--temp_location=gs://b/tmp", "--dry-run")
    assert r.exit_code == 0, r.output
    opts = json.loads(r.stdout)
    assert opts["runner"] == "DataflowRunner" and opts["project"] == "p" and opts["region"] == "europe-west4"
    assert opts["temp_location"] == "gs://b/tmp"
    assert not out.exists()


def test_ingest_dry_run_on_the_direct_runner_shows_the_parallelism(tmp_path):
    r, out = _ingest(tmp_path, "--dry-run", "--set", "ingest.workers=2")
    assert r.exit_code == 0, r.output
    opts = json.loads(r.stdout)
    assert opts["direct_num_workers"] == 2 and opts["direct_running_mode"] == "multi_processing"
    assert not out.exists()


def test_dry_run_with_missing_dataflow_options_is_the_same_error(tmp_path):
    r, _ = _ingest(tmp_path, DATAFLOW, "--dry-run")
    assert r.exit_code == 1 and "--project" in r.output and "--region" in r.output
