"""Issue 25.3: one reading of a run's release decision (`RunOutputs.verdict()`) for report, runs, runs
show, the run's summary and a Vertex AI job; one rule for missing data (None: the run did not produce
the output; OutputUnreadable: it did, but it cannot be read, one `error:` line in the CLI); the two
former click.ClickException sites print `error: ...` like every other error.

The runs are tiny ML Metadata databases written here, as TFX leaves them (no pipeline runs)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components.release_check.blessing import read_reasons, write_marker
from pipeline.artifacts import OutputUnreadable, RunRecord
from tests.helpers import REPO, SAMPLE, cli_in_process, tiny_config

PIPELINE = "synthdetect"
REFUSED = ["auc = 0.610 < 0.8", "accuracy drop under jpeg_q50 = +0.210 > 0.05"]
PASSED = ["auc = 0.950 >= 0.8", "no production model yet: nothing to compare with (this version becomes the first)"]


def _check(blessed: bool, reasons: list[str]) -> dict:
    """release_check.json with what the verdict reads of it."""
    return {"blessed": blessed, "reasons": reasons, "calibration": {"candidate": {"threshold": 0.42}},
            "robustness": {"perturbations": {}, "max_allowed_drop": 0.05}, "holdout": {},
            "production": {"compared": False, "registry": "reg", "reason": "no production model in the registry"}}


def write_run(tmp: Path, run_id: str, *, blessed: bool | None = None, reasons: list[str] = (),
              pushed: dict | None = None, evaluator_blessed: bool | None = None, marker: bool = True,
              check: bool = True, md: Path | None = None) -> Path:
    """An ML Metadata database (`md`, default tmp/mlmd.sqlite) with run `run_id` as TFX records one:
    ImageExampleGen's examples (with ingest_summary.json); with `evaluator_blessed`, the Evaluator's
    blessing; with `blessed`, ReleaseCheck's check (release_check.json unless not `check`) and blessing
    (property, and the BLESSED / NOT_BLESSED marker unless not `marker`); with `pushed` (the
    pushed_model's properties), RegistryPusher's output. Returns the database path."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb
    md = md or tmp / "mlmd.sqlite"
    cfg = pb.ConnectionConfig()
    cfg.sqlite.filename_uri = str(md)
    cfg.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(cfg)

    def type_id(put, kind, name):
        return put(kind(name=name))
    ptype = type_id(store.put_context_type, pb.ContextType, "pipeline")
    rtype = type_id(store.put_context_type, pb.ContextType, "pipeline_run")
    ntype = type_id(store.put_context_type, pb.ContextType, "node")
    pipeline = store.get_context_by_type_and_name("pipeline", PIPELINE) or \
        store.get_contexts_by_id(store.put_contexts([pb.Context(type_id=ptype, name=PIPELINE)]))[0]
    [run] = store.put_contexts([pb.Context(type_id=rtype, name=run_id)])

    def step(component: str, outputs: dict[str, tuple[str, Path, dict]]) -> None:
        name = f"{PIPELINE}.{component}"
        node = store.get_context_by_type_and_name("node", name)
        node_id = node.id if node else store.put_contexts([pb.Context(type_id=ntype, name=name)])[0]
        etype = store.put_execution_type(pb.ExecutionType(name=component))
        [e] = store.put_executions([pb.Execution(type_id=etype, last_known_state=pb.Execution.COMPLETE)])
        store.put_attributions_and_associations(
            [], [pb.Association(context_id=c, execution_id=e) for c in (pipeline.id, node_id, run)])
        for key, (type_name, uri, props) in outputs.items():
            uri.mkdir(parents=True, exist_ok=True)
            art = pb.Artifact(type_id=store.put_artifact_type(pb.ArtifactType(name=type_name)), uri=str(uri),
                              state=pb.Artifact.LIVE)
            for name, value in props.items():
                if isinstance(value, int):
                    art.custom_properties[name].int_value = value
                else:
                    art.custom_properties[name].string_value = value
            [a] = store.put_artifacts([art])
            event = pb.Event(artifact_id=a, execution_id=e, type=pb.Event.OUTPUT)
            event.path.steps.add().key = key
            store.put_events([event])

    root = tmp / "root" / run_id
    examples = root / "ImageExampleGen" / "examples"
    step("ImageExampleGen", {"examples": ("Examples", examples, {})})
    (examples / "ingest_summary.json").write_text(json.dumps({"inputs": 4, "written": 4, "quarantined": 0}))
    if evaluator_blessed is not None:
        step("Evaluator", {"blessing": ("ModelBlessing", root / "Evaluator" / "blessing",
                                        {"blessed": int(evaluator_blessed)})})
    if blessed is not None:
        check_dir, blessing_dir = root / "ReleaseCheck" / "check", root / "ReleaseCheck" / "blessing"
        step("ReleaseCheck", {"check": ("synthdetect.ReleaseCheck", check_dir, {"blessed": int(blessed)}),
                              "blessing": ("ModelBlessing", blessing_dir, {"blessed": int(blessed)})})
        if check:
            (check_dir / "release_check.json").write_text(json.dumps(_check(blessed, list(reasons))))
        if marker:
            write_marker(str(blessing_dir), blessed, list(reasons))
    if pushed is not None:
        step("RegistryPusher", {"pushed_model": ("PushedModel", root / "RegistryPusher" / "pushed_model", pushed)})
    return md


def outputs_of(md: Path, run_id: str | None = None):
    return RunRecord.load(str(md), PIPELINE, run_id).outputs()


def _cli(*args, cwd=REPO) -> subprocess.CompletedProcess:
    return cli_in_process(*args, cwd=cwd)   # runs / report only read


def _one_error_line(proc: subprocess.CompletedProcess, *fragments: str, code: int = 1) -> str:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    lines = [li for li in proc.stderr.strip().splitlines() if li.startswith(("error:", "Error:"))]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------ the decision
def test_blessed_and_pushed_reads_the_same_for_every_reader(tmp_path):
    pushed = {"pushed": 1, "pushed_version": "v3", "pushed_destination": str(tmp_path / "registry" / "v3")}
    md = write_run(tmp_path, "r1", blessed=True, reasons=PASSED, pushed=pushed, evaluator_blessed=True)
    outputs = outputs_of(md)
    for figures in (False, True):
        v = outputs.verdict(figures=figures)
        assert (v.blessed, v.reasons, v.failures) == (True, PASSED, []), figures
        assert (v.pushed_version, v.pushed_to, v.duplicate_of) == ("v3", pushed["pushed_destination"], None)
    assert outputs.verdict().calibration == {"candidate": {"threshold": 0.42}}
    assert outputs.blessing() == (True, PASSED)

    config = ("--set", f"metadata_path={md}", "--set", f"pipeline_root={tmp_path / 'root'}")
    runs = _cli("runs", *config, "--json")
    assert runs.returncode == 0, runs.stderr[-3000:]
    [summary] = json.loads(runs.stdout)
    assert (summary["blessed"], summary["reasons"], summary["pushed_version"], summary["pushed_to"]) == \
        (True, PASSED, "v3", pushed["pushed_destination"])
    report = _cli("report", *config, "--json")
    assert report.returncode == 0, report.stderr[-3000:]
    rep = json.loads(report.stdout)
    assert (rep["blessed"], rep["blessing_reasons"], rep["validation_failures"], rep["pushed_version"],
            rep["pushed_to"], rep["duplicate_of"], rep["status"]) == \
        (True, PASSED, [], "v3", pushed["pushed_destination"], None, "complete")
    show = _cli("runs", *config, "show", "r1", "--json")
    assert show.returncode == 0, show.stderr[-3000:]
    lin = json.loads(show.stdout)
    assert lin["evaluation"]["blessed"] is True and lin["evaluation"]["reasons"] == []
    assert lin["registry"] == {"pushed": True, "version": "v3", "destination": pushed["pushed_destination"]}


def test_refused_with_reasons(tmp_path):
    md = write_run(tmp_path, "r1", blessed=False, reasons=REFUSED, pushed={"pushed": 0}, evaluator_blessed=True)
    outputs = outputs_of(md)
    for figures in (False, True):
        v = outputs.verdict(figures=figures)
        assert (v.blessed, v.reasons, v.failures) == (False, REFUSED, REFUSED), figures
        assert (v.pushed_version, v.pushed_to, v.duplicate_of) == (None, None, None)
    assert read_reasons(outputs.uri("ReleaseCheck", "blessing"), False) == REFUSED


def test_a_duplicate_is_blessed_and_not_pushed(tmp_path):
    md = write_run(tmp_path, "r1", blessed=True, reasons=PASSED, pushed={"pushed": 0, "duplicate_of": "v2"})
    v = outputs_of(md).verdict(figures=False)
    assert (v.blessed, v.pushed_version, v.pushed_to, v.duplicate_of) == (True, None, None, "v2")
    report = _cli("report", "--set", f"metadata_path={md}", "--json")
    assert report.returncode == 0, report.stderr[-3000:]
    assert json.loads(report.stdout)["duplicate_of"] == "v2"


def test_without_a_release_check_the_evaluator_decides(tmp_path):
    """A run stopped before the ReleaseCheck: TFMA's blessing (the Evaluator's), for runs as for report."""
    md = write_run(tmp_path, "r1", evaluator_blessed=False)
    v = outputs_of(md).verdict(figures=False)
    assert (v.blessed, v.reasons, v.pushed_version) == (False, [], None)


# ------------------------------------------------------------------------------ missing data
def test_not_produced_is_none(tmp_path):
    md = write_run(tmp_path, "r1")      # only ImageExampleGen ran
    outputs = outputs_of(md)
    assert outputs.release_check() is None and outputs.release_scores() is None and outputs.blessing() is None
    assert outputs.training() is None and outputs.history() is None and outputs.evaluation() is None
    assert outputs.anomalies() == [] and outputs.calibrated_threshold() is None
    assert outputs.ingest_summary()["inputs"] == 4 and outputs.data_fingerprint().startswith("sha256:")
    for figures in (False, True):
        v = outputs.verdict(figures=figures)
        assert (v.blessed, v.reasons, v.failures, v.pushed_version, v.duplicate_of) == (None, [], [], None, None)
    runs = _cli("runs", "--set", f"metadata_path={md}", "--json")
    assert runs.returncode == 0 and json.loads(runs.stdout)[0]["blessed"] is None, runs.stderr[-3000:]


@pytest.mark.parametrize("damage, output", [
    ("check_missing", "ReleaseCheck.check"),        # the artifact is recorded, release_check.json is not there
    ("check_corrupt", "ReleaseCheck.check"),        # release_check.json is no JSON
    ("marker_missing", "ReleaseCheck.blessing"),    # the blessing has no BLESSED / NOT_BLESSED file
    ("examples_gone", "ImageExampleGen.examples"),  # the whole folder was deleted
])
def test_unreadable_raises_and_the_cli_prints_one_error_line(tmp_path, damage, output):
    md = write_run(tmp_path, "r1", blessed=False, reasons=REFUSED, pushed={"pushed": 0},
                   check=damage != "check_missing", marker=damage != "marker_missing")
    root = tmp_path / "root" / "r1"
    if damage == "check_corrupt":
        (root / "ReleaseCheck" / "check" / "release_check.json").write_text("{not json")
    if damage == "examples_gone":
        shutil.rmtree(root / "ImageExampleGen")
    outputs = outputs_of(md)
    reader = {"ReleaseCheck.check": outputs.release_check, "ReleaseCheck.blessing": outputs.blessing,
              "ImageExampleGen.examples": outputs.data_fingerprint}[output]
    with pytest.raises(OutputUnreadable) as e:
        reader()
    assert e.value.name == output and "run r1: output " + output in str(e.value)
    # `report` reads the check and the examples; `runs` the blessing and the examples
    command = "runs" if output == "ReleaseCheck.blessing" else "report"
    proc = _cli(command, "--set", f"metadata_path={md}", "--json")
    _one_error_line(proc, f"run r1: output {output} at ", "cannot be read")
    if command == "runs":   # listed all the same (issue 26.3: one bad entry never hides the rest), then the error
        (listed,) = json.loads(proc.stdout)
        assert listed["run_id"] == "r1" and "cannot be read" in listed["unreadable"]
        text = _cli("runs", "--set", f"metadata_path={md}")
        assert text.stdout.startswith("runs of") and "outputs unreadable: run r1: output" in text.stdout
        _one_error_line(text, "cannot be read")


# ------------------------------------------------------------------------------ Vertex AI jobs
def test_a_vertex_job_is_read_by_the_same_verdict():
    """The Evaluator's blessing decides a job stopped before the ReleaseCheck, as for a local run."""
    from google.cloud.aiplatform_v1 import types as t

    from pipeline.vertex import job_summary
    evaluator = t.PipelineTaskDetail(task_name="Evaluator", state="SUCCEEDED")
    evaluator.outputs["blessing"] = t.PipelineTaskDetail.ArtifactList(artifacts=[
        t.Artifact(uri="gs://b/root/Evaluator/blessing", metadata={"blessed": 0})])
    job = t.PipelineJob(name="projects/p/locations/l/pipelineJobs/j", state="PIPELINE_STATE_FAILED",
                        job_detail=t.PipelineJobDetail(task_details=[
                            evaluator, t.PipelineTaskDetail(task_name="ReleaseCheck", state="FAILED")]))
    s = job_summary(job)
    assert (s["blessed"], s["pushed_version"], s["pushed_to"]) == (False, None, None)


# ------------------------------------------------------------------------------ former ClickExceptions
def _patched_cli(patch: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    """`synthdetect ARGS` in a Python process that first runs `patch` (a fault put in by hand)."""
    code = f"import sys\n{patch}\nfrom pipeline.cli import main\nsys.argv = ['synthdetect', *sys.argv[1:]]\n" \
           "main(prog_name='synthdetect')\n"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=900, env=env)


def test_a_failed_run_is_one_error_line_exit_1(tmp_path):
    patch = ("import pipeline.runner as r\n"
             "def run_local(cfg, log_path, run_id=None, on_event=None):\n"
             "    raise r.PipelineFailed('Trainer_baseline', RuntimeError('out of memory'), log_path)\n"
             "r.run_local = run_local\n")
    proc = _patched_cli(patch, "run", "--config", tiny_config(tmp_path), cwd=tmp_path)
    _one_error_line(proc, "component Trainer_baseline failed: RuntimeError: out of memory", "full log:", code=1)


def test_an_ingest_summary_that_does_not_account_for_every_input_is_one_error_line_exit_1(tmp_path):
    data = tmp_path / "data"
    for label in ("real", "synthesized"):
        (data / label).mkdir(parents=True)
        for f in sorted((SAMPLE / label).rglob("*.*"))[:2]:
            shutil.copy(f, data / label / f.name)
    patch = ("import components.ingest.job as job\n"
             "real = job.run_ingest\n"
             "job.run_ingest = lambda *a, **k: {**real(*a, **k), 'accounted_for': False}\n")
    proc = _patched_cli(patch, "ingest", "--config", REPO / "configs" / "local.yaml", "--input", data,
                        "--output", tmp_path / "out", "--no-progress", "--set", "ingest.workers=1", cwd=tmp_path)
    _one_error_line(proc, "ingest summary does not account for every input (see ingest_summary.json)", code=1)
