"""Issue 27.4: schedules on Vertex AI: list, pause, resume, delete; create-or-update by display name;
the `TZ=` / `CRON_TZ=` prefix and --time-zone.

RECORDED/FAKE RESPONSES: the schedule resources below are google.cloud.aiplatform_v1 Schedule
messages (the SDK's own types) built in this file in the shape ScheduleService.ListSchedules returns
them, standing in for what `PipelineJobSchedule.list()` fetches. Nothing here talks to Google Cloud
and none of our code is replaced."""
import pytest
from click.testing import CliRunner

from pipeline.cli import main
from pipeline.vertex import (SCHEDULE_UPDATE_MASK, CloudError, existing_schedule, find_schedule, schedule_cron,
                             schedule_summary, schedules_of)
from schemas.config import ScheduleConfig
from tests.conftest import REPO

VERTEX = str(REPO / "configs" / "vertex.yaml")
PARENT = "projects/my-project/locations/us-central1"


def recorded_schedule(sid: str, display_name: str, pipeline: str = "synthdetect", state: str = "ACTIVE",
                      cron: str = "TZ=Etc/UTC 0 3 * * 1"):
    """A FAKE Vertex AI Schedule resource (aiplatform_v1 types), as ListSchedules returns one."""
    from google.cloud.aiplatform_v1 import types as t
    job = t.PipelineJob(display_name=pipeline)
    job.pipeline_spec = {"pipelineInfo": {"name": pipeline}}
    return t.Schedule(name=f"{PARENT}/schedules/{sid}", display_name=display_name, state=state, cron=cron,
                      max_concurrent_run_count=1, started_run_count=4,
                      next_run_time={"seconds": 1796000000},
                      create_pipeline_job_request=t.CreatePipelineJobRequest(parent=PARENT, pipeline_job=job))


LISTED = [recorded_schedule("111", "synthdetect-schedule"),
          recorded_schedule("222", "synthdetect-nightly", state="PAUSED", cron="TZ=Europe/Berlin 0 2 * * *"),
          recorded_schedule("333", "other-schedule", pipeline="other-pipeline")]


def test_summary_of_a_recorded_schedule():
    s = schedule_summary(LISTED[1])
    assert s["id"] == "222" and s["display_name"] == "synthdetect-nightly" and s["state"] == "PAUSED"
    assert s["cron"] == "TZ=Europe/Berlin 0 2 * * *" and s["pipeline"] == "synthdetect"
    assert s["started_runs"] == 4 and s["next_run"].startswith("2026-")


def test_list_shows_only_this_pipelines_schedules():
    assert [s["id"] for s in schedules_of(LISTED, "synthdetect")] == ["111", "222"]


@pytest.mark.parametrize("key", ["synthdetect-nightly", "222", f"{PARENT}/schedules/222"])
def test_a_schedule_is_found_by_display_name_id_or_resource_name(key):
    assert find_schedule(LISTED, key).name.endswith("/222")


def test_an_unknown_or_ambiguous_schedule_is_one_error_naming_the_candidates():
    with pytest.raises(CloudError, match=r"no schedule 'weekly'.*synthdetect-schedule \(111\)"):
        find_schedule(LISTED, "weekly")
    twice = LISTED + [recorded_schedule("444", "synthdetect-schedule")]
    with pytest.raises(CloudError, match=r"2 schedules are named 'synthdetect-schedule' \(111, 444\)"):
        find_schedule(twice, "synthdetect-schedule")


def test_rerunning_schedule_updates_the_one_with_the_same_display_name():
    assert existing_schedule(LISTED, "synthdetect-schedule").name.endswith("/111")   # -> UpdateSchedule
    assert existing_schedule(LISTED, "synthdetect-weekly") is None                    # -> CreateSchedule
    assert "cron" in SCHEDULE_UPDATE_MASK and "create_pipeline_job_request" in SCHEDULE_UPDATE_MASK
    with pytest.raises(CloudError, match="2 schedules are named"):
        existing_schedule(LISTED + [recorded_schedule("444", "synthdetect-schedule")], "synthdetect-schedule")


@pytest.mark.parametrize("cron, zone, expected", [
    ("0 3 * * 1", None, "TZ=Etc/UTC 0 3 * * 1"),
    ("TZ=Europe/Berlin 0 3 * * 1", None, "TZ=Europe/Berlin 0 3 * * 1"),
    ("CRON_TZ=America/New_York 1 * * * *", None, "TZ=America/New_York 1 * * * *"),
    ("0 3 * * 1", "Europe/Berlin", "TZ=Europe/Berlin 0 3 * * 1"),
    (None, "Asia/Tokyo", "TZ=Asia/Tokyo 0 3 * * 1"),
])
def test_time_zone_prefix_and_option(cron, zone, expected):
    assert schedule_cron(cron, zone, ScheduleConfig()) == expected


@pytest.mark.parametrize("cron, zone, message", [
    ("TZ=Europe/Berlinn 0 3 * * 1", None, "time zone 'Europe/Berlinn' is not an IANA time zone"),
    ("0 3 * * 1", "Mars/Olympus", "time zone 'Mars/Olympus' is not an IANA time zone"),
    ("TZ=Europe/Berlin 0 3 * * 1", "Asia/Tokyo", "names two time zones"),
    ("TZ=Europe/Berlin 61 3 * * 1", None, "the minute field '61' is not valid"),
])
def test_bad_time_zones_are_one_error(cron, zone, message):
    with pytest.raises(CloudError, match=message):
        schedule_cron(cron, zone, ScheduleConfig())


def test_config_accepts_the_prefix_and_checks_the_zone():
    assert ScheduleConfig(cron="TZ=Europe/Berlin 0 3 * * 1").cron == "TZ=Europe/Berlin 0 3 * * 1"
    with pytest.raises(ValueError, match="not an IANA time zone"):
        ScheduleConfig(time_zone="Europe/Nowhere")


@pytest.mark.parametrize("args", [("schedule", "--cron", "TZ=Europe/Nowhere 0 3 * * 1"),
                                  ("schedule", "--time-zone", "Europe/Nowhere")])
def test_cli_refuses_a_bad_zone_in_one_line_before_anything_else(args):
    r = CliRunner().invoke(main, [*args, "--config", VERTEX, "--dry-run"])
    assert r.exit_code == 1, r.output
    assert r.output.strip() == ("error: time zone 'Europe/Nowhere' is not an IANA time zone "
                                "(e.g. Europe/Berlin, Etc/UTC)")


@pytest.mark.parametrize("sub", ["list", "pause", "resume", "delete"])
def test_schedule_subcommands_exist(sub):
    r = CliRunner().invoke(main, ["schedule", sub, "--help"])
    assert r.exit_code == 0, r.output


# --json on the commands that change state (issue 27.10). The SDK's network calls are replaced by
# FAKES of the library (PipelineJob.submit, PipelineJobSchedule.list/get) that record what was asked
# and answer with the recorded resources above; our code runs unchanged, with credentials loaded
# from a fake authorized-user ADC file (google-auth reads it without network).
@pytest.fixture
def fake_vertex(monkeypatch, tmp_path):
    import json

    from google.cloud import aiplatform
    adc = tmp_path / "adc.json"
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "x.apps.googleusercontent.com",
                               "client_secret": "s", "refresh_token": "r"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    calls: list = []

    def submit(self, service_account=None, network=None, **_):
        calls.append(("submit", self.job_id, service_account))
        self._gca_resource.name = f"{PARENT}/pipelineJobs/{self.job_id}"

    class Listed:
        def __init__(self, resource):
            self.gca_resource = resource

    class Got:
        def __init__(self, name):
            self.name = name

        def pause(self):
            calls.append(("pause", self.name))

        def resume(self):
            calls.append(("resume", self.name))

        def delete(self):
            calls.append(("delete", self.name))

    monkeypatch.setattr(aiplatform.PipelineJob, "submit", submit)
    monkeypatch.setattr(aiplatform.PipelineJobSchedule, "list",
                        classmethod(lambda cls, **kw: [Listed(r) for r in LISTED]))
    monkeypatch.setattr(aiplatform.PipelineJobSchedule, "get", classmethod(lambda cls, name, **kw: Got(name)))
    return calls


@pytest.fixture
def spec(vertex_spec):
    return str(vertex_spec)


def test_submit_json_prints_the_created_job(fake_vertex, spec):
    import json
    r = CliRunner().invoke(main, ["submit", "--config", VERTEX, "--spec", spec, "--job-id", "synthdetect-x1",
                                  "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["name"] == f"{PARENT}/pipelineJobs/synthdetect-x1" and "console.cloud.google.com" in out["console"]
    assert fake_vertex == [("submit", "synthdetect-x1", "synthdetect-pipeline@my-project.iam.gserviceaccount.com")]
    human = CliRunner().invoke(main, ["submit", "--config", VERTEX, "--spec", spec, "--job-id", "synthdetect-x2"])
    assert human.exit_code == 0 and human.stdout.startswith(f"submitted {PARENT}/pipelineJobs/synthdetect-x2")


@pytest.mark.parametrize("action, done", [("pause", "paused"), ("resume", "resumed"), ("delete", "deleted")])
def test_schedule_changes_print_json(fake_vertex, action, done):
    import json
    r = CliRunner().invoke(main, ["schedule", action, "synthdetect-nightly", "--config", VERTEX, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (out["action"], out["id"], out["display_name"]) == (done, "222", "synthdetect-nightly")
    assert fake_vertex == [(action, f"{PARENT}/schedules/222")]
    unknown = CliRunner().invoke(main, ["schedule", action, "weekly", "--config", VERTEX, "--json"])
    assert unknown.exit_code == 1 and unknown.output.startswith("error: no schedule 'weekly'")
