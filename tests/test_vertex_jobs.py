"""`submit --wait` and `runs` with a vertex config: the job's states and release decision read from
Vertex AI PipelineJob resources.

RECORDED/FAKE RESPONSES: the job resources below are google.cloud.aiplatform_v1 PipelineJob messages
(the SDK's own types) built in this file in the shape the Vertex AI API returns them (task details,
output artifacts with their metadata), standing in for what `PipelineJob._sync_gca_resource()` /
`PipelineJob.list()` fetch. Nothing here talks to Google Cloud and none of our code is replaced."""
import subprocess

import click
import pytest

from pipeline.cli.cloud import finish_job
from pipeline.cli.runs import vertex_job_line
from pipeline.vertex import job_summary, wait_for_job
from tests.conftest import REPO
from tests.helpers import no_adc_env
from tests.helpers import CLI

VERTEX = REPO / "configs" / "vertex.yaml"
NAME = "projects/my-project/locations/us-central1/pipelineJobs/synthdetect-20261126"


def recorded_job(state: str, tasks: dict[str, str], blessed: bool | None = None, pushed: str | None = None,
                 error: str | None = None, duplicate_of: str | None = None):
    """A FAKE Vertex AI PipelineJob resource (aiplatform_v1 types), as the API returns one."""
    from google.cloud.aiplatform_v1 import types as t
    from google.rpc import status_pb2
    details = []
    for name, st in tasks.items():
        d = t.PipelineTaskDetail(task_name=name, state=st)
        if name == "ReleaseCheck" and blessed is not None:
            d.outputs["blessing"] = t.PipelineTaskDetail.ArtifactList(artifacts=[
                t.Artifact(uri="gs://b/root/ReleaseCheck/blessing", metadata={"blessed": int(blessed)})])
        if name == "RegistryPusher" and st == "SUCCEEDED":
            meta = {"pushed": 1, "pushed_version": pushed, "pushed_destination": f"gs://b/registry/{pushed}"} \
                if pushed else {"pushed": 0, **({"duplicate_of": duplicate_of} if duplicate_of else {})}
            d.outputs["pushed_model"] = t.PipelineTaskDetail.ArtifactList(artifacts=[
                t.Artifact(uri="gs://b/root/RegistryPusher/pushed_model", metadata=meta)])
        details.append(d)
    job = t.PipelineJob(name=NAME, display_name="synthdetect", state=state,
                        job_detail=t.PipelineJobDetail(task_details=details))
    if error:
        job._pb.error.CopyFrom(status_pb2.Status(code=9, message=error))  # noqa: SLF001 - proto-plus: the wrapped protobuf message
    return job


STEPS = ("RuntimeParameters", "ImageExampleGen", "Trainer_vgg16_finetune", "Evaluator", "ReleaseCheck",
         "RegistryPusher")


def _all(state: str) -> dict[str, str]:
    return {s: state for s in STEPS}


def test_wait_polls_until_the_job_ends_and_reports_each_task_state_change():
    responses = iter([
        recorded_job("PIPELINE_STATE_PENDING", {}),
        recorded_job("PIPELINE_STATE_RUNNING", {"RuntimeParameters": "SUCCEEDED", "ImageExampleGen": "RUNNING"}),
        recorded_job("PIPELINE_STATE_RUNNING", {"RuntimeParameters": "SUCCEEDED", "ImageExampleGen": "RUNNING"}),
        recorded_job("PIPELINE_STATE_SUCCEEDED", _all("SUCCEEDED"), blessed=True, pushed="v3"),
    ])
    seen, sleeps = [], []
    job = wait_for_job(lambda: next(responses), lambda task, state: seen.append((task, state)), sleeps.append, 5)
    assert sleeps == [5, 5, 5]   # three polls before the terminal state
    assert seen[:2] == [("RuntimeParameters", "SUCCEEDED"), ("ImageExampleGen", "RUNNING")]
    assert ("ImageExampleGen", "SUCCEEDED") in seen and seen.count(("ImageExampleGen", "RUNNING")) == 1
    assert job["state"] == "PIPELINE_STATE_SUCCEEDED" and job["blessed"] is True
    assert job["pushed_version"] == "v3" and job["pushed_to"] == "gs://b/registry/v3"


@pytest.mark.parametrize("job, allow, code, message", [
    (recorded_job("PIPELINE_STATE_SUCCEEDED", _all("SUCCEEDED"), blessed=True, pushed="v3"), False, None, None),
    (recorded_job("PIPELINE_STATE_SUCCEEDED", _all("SUCCEEDED"), blessed=False), False, 3, None),
    # an identical rerun: blessed, the registry already holds the same model (as a local run: exit 0)
    (recorded_job("PIPELINE_STATE_SUCCEEDED", _all("SUCCEEDED"), blessed=True, duplicate_of="v2"), False, None,
     None),
    (recorded_job("PIPELINE_STATE_SUCCEEDED", _all("SUCCEEDED"), blessed=False), True, 0, None),
    (recorded_job("PIPELINE_STATE_FAILED", {**_all("SUCCEEDED"), "Evaluator": "FAILED"},
                  error="The DAG failed because some tasks failed: Evaluator"), False, 1,
     f"pipeline job {NAME} failed: The DAG failed because some tasks failed: Evaluator"),
    (recorded_job("PIPELINE_STATE_CANCELLED", {"ImageExampleGen": "CANCELLED"}), True, 1,
     f"pipeline job {NAME} cancelled"),
])
def test_wait_ends_with_the_exit_code_of_a_local_run(job, allow, code, message):
    summary = job_summary(job)
    if code is None:
        assert finish_job(summary, allow) is None
        return
    with pytest.raises((click.exceptions.Exit, click.ClickException)) as e:
        finish_job(summary, allow)
    assert e.value.exit_code == code
    if message:
        assert e.value.format_message() == message


def test_runs_lines_for_vertex_jobs():
    jobs = [job_summary(recorded_job("PIPELINE_STATE_SUCCEEDED", _all("SUCCEEDED"), blessed=True, pushed="v3")),
            job_summary(recorded_job("PIPELINE_STATE_RUNNING", {"ImageExampleGen": "SUCCEEDED",
                                                                "Trainer_vgg16_finetune": "RUNNING"}))]
    assert vertex_job_line(jobs[0]).startswith("synthdetect-20261126  ")
    assert "succeeded" in vertex_job_line(jobs[0]) and "6/6 tasks  blessed  pushed v3" in vertex_job_line(jobs[0])
    assert "running" in vertex_job_line(jobs[1]) and "1/2 tasks  not evaluated  not pushed" in vertex_job_line(jobs[1])


@pytest.mark.parametrize("args", [("runs",), ("runs", "show", "latest"), ("submit", "--wait")])
def test_vertex_runs_and_wait_without_credentials_are_one_line(tmp_path, args, vertex_spec):
    """`runs` on a vertex config asks Vertex AI (not the local ML Metadata database)."""
    extra = ("--spec", str(vertex_spec)) if args[0] == "submit" else ()
    cmd = [CLI, args[0], "--config", str(VERTEX), *args[1:], *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=no_adc_env(tmp_path),
                       cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith("error: no Google Cloud credentials"), r.stderr
