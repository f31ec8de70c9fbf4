"""Google Cloud: the compiled Vertex pipeline spec, submit/schedule requests (dry run), the
no-credentials error, and the vertex: config section. Nothing here talks to Google Cloud."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from schemas.config import ConfigError, load_config
from tests.conftest import REPO

CLI = str(Path(sys.executable).parent / "synthdetect")
VERTEX = REPO / "configs" / "vertex.yaml"
BEAM_COMPONENTS = ("ImageExampleGen", "StatisticsGen", "Transform", "Evaluator")
TRAINERS = ("Trainer_vgg16_finetune", "Trainer_baseline")


def _cli(*args, env=None, cwd=REPO):
    return subprocess.run([CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=env)


def _no_credentials_env(tmp_path) -> dict:
    """No Application Default Credentials anywhere: no key file, an empty gcloud config, no metadata server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "CLOUDSDK_", "GCE_"))}
    env.update(CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), HOME=str(tmp_path / "home"),
               GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9", NO_GCE_CHECK="True")
    return env


@pytest.fixture(scope="module")
def cfg():
    return load_config(VERTEX)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory, cfg):
    out = tmp_path_factory.mktemp("vertex") / "pipeline.json"
    r = _cli("compile", "--config", VERTEX, "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    return out, json.loads(out.read_text())


def _executor(job: dict, task: str) -> dict:
    ps = job["pipelineSpec"]
    label = ps["components"][ps["root"]["dag"]["tasks"][task]["componentRef"]["name"]]["executorLabel"]
    return ps["deploymentSpec"]["executors"][label]["container"]


def _same_graph(sent: dict, compiled: dict, enable_cache: bool) -> None:
    """The request carries the compiled spec; the SDK only adds each task's caching option."""
    tasks = sent["root"]["dag"]["tasks"]
    assert {t.pop("cachingOptions")["enableCache"] for t in tasks.values()} == {enable_cache}
    assert sent["root"] == compiled["root"]
    assert sent["deploymentSpec"] == compiled["deploymentSpec"]


def _param(job: dict, task: str, name: str) -> str:
    p = job["pipelineSpec"]["root"]["dag"]["tasks"][task]["inputs"]["parameters"][name]
    return p["runtimeValue"]["constantValue"]["stringValue"]


def test_compiled_spec_is_a_vertex_pipeline_job_with_every_component(compiled, cfg):
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    from pipeline.pipeline import create_components
    from pipeline.vertex import CONTAINER_COMMAND

    path, job = compiled
    # parses as the PipelineJob message Vertex AI accepts (unknown fields would raise)
    msg = json_format.ParseDict(job, pipeline_spec_pb2.PipelineJob())
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    assert spec.schema_version == "2.0.0" and spec.pipeline_info.name == cfg.pipeline_name
    assert msg.runtime_config.gcs_output_directory == cfg.vertex.pipeline_root
    tasks = set(job["pipelineSpec"]["root"]["dag"]["tasks"])
    assert tasks == {c.id for c in create_components(cfg)}
    for task in tasks:
        container = _executor(job, task)
        assert container["image"] == cfg.vertex.images.cpu, task
        assert container["command"] == CONTAINER_COMMAND, task
    # Beam components: the Dataflow args from config; the others: none
    v = cfg.vertex
    want = {"--runner=DataflowRunner", f"--project={v.project}", f"--region={v.region}",
            f"--service_account_email={v.service_account}", f"--temp_location={v.dataflow.temp_location}",
            f"--staging_location={v.dataflow.staging_location}", f"--sdk_container_image={v.images.cpu}",
            f"--machine_type={v.dataflow.machine_type}", f"--max_num_workers={v.dataflow.max_num_workers}",
            f"--disk_size_gb={v.dataflow.disk_size_gb}"}
    for task in BEAM_COMPONENTS:
        assert want <= set(_executor(job, task)["args"]), task
    for task in tasks - set(BEAM_COMPONENTS):
        assert "--runner=DataflowRunner" not in _executor(job, task)["args"], task
    # Trainers: launched as Vertex AI custom jobs on the configured GPU worker pool and image
    for task in TRAINERS:
        args = _executor(job, task)["args"]
        assert args[args.index("--executor_class_path") + 1] == \
            "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor"
        cc = json.loads(_param(job, task, "custom_config"))
        assert cc["ai_platform_enable_vertex"] is True and cc["ai_platform_vertex_region"] == v.region
        training = cc["ai_platform_training_args"]
        assert training["project"] == v.project
        assert training["job_spec"]["service_account"] == v.service_account
        (pool,) = training["job_spec"]["worker_pool_specs"]
        assert pool["machine_spec"] == {"machine_type": v.training.machine_type,
                                        "accelerator_type": v.training.accelerator_type,
                                        "accelerator_count": v.training.accelerator_count}
        assert pool["container_spec"]["image_uri"] == v.images.gpu != v.images.cpu
        assert cc["image_size"] == cfg.model.image_size and cc["epochs"] == cfg.model.epochs
    assert json.loads(_param(job, "Trainer_baseline", "custom_config"))["weights"] == "none"
    assert _param(job, "Trainer_vgg16_finetune", "run_fn") == "components.trainer.run_fn.run_fn"
    assert _param(job, "Transform", "preprocessing_fn") == "components.transform.preprocessing.preprocessing_fn"
    # the schema file is read from the source tree inside the image, not from this checkout
    assert _param(job, "ImportSchemaGen", "schema_file") == "/synthdetect/schemas/schema.pbtxt"
    assert str(REPO) not in path.read_text()


def test_submit_dry_run_prints_the_create_request(compiled, cfg, tmp_path):
    path, job = compiled
    r = _cli("submit", "--config", VERTEX, "--spec", path, "--dry-run", env=_no_credentials_env(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    v = cfg.vertex
    assert out["method"].endswith("PipelineService.CreatePipelineJob") and out["spec"] == str(path)
    req = out["request"]
    assert req["parent"] == f"projects/{v.project}/locations/{v.region}"
    assert req["pipelineJobId"].startswith(f"{cfg.pipeline_name}-")
    pj = req["pipelineJob"]
    assert pj["serviceAccount"] == v.service_account
    assert pj["runtimeConfig"]["gcsOutputDirectory"] == v.pipeline_root
    assert pj["labels"] == v.labels and pj["displayName"] == cfg.pipeline_name
    _same_graph(pj["pipelineSpec"], job["pipelineSpec"], cfg.enable_cache)
    params = out["config_parameters"]
    assert params["data.input"] == cfg.data.input and params["model"]["image_size"] == cfg.model.image_size


def test_schedule_dry_run_prints_the_schedule_request(compiled, cfg, tmp_path):
    path, job = compiled
    r = _cli("schedule", "--config", VERTEX, "--spec", path, "--cron", "0 3 * * 1", "--max-concurrent", "1",
             "--dry-run", env=_no_credentials_env(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    v = cfg.vertex
    assert out["method"].endswith("ScheduleService.CreateSchedule") and out["spec"] == str(path)
    sched = out["request"]["schedule"]
    assert out["request"]["parent"] == f"projects/{v.project}/locations/{v.region}"
    assert sched["cron"] == f"TZ={v.schedule.time_zone} 0 3 * * 1"
    assert int(sched["maxConcurrentRunCount"]) == 1
    create = sched["createPipelineJobRequest"]
    assert create["parent"] == out["request"]["parent"]
    assert create["pipelineJob"]["serviceAccount"] == v.service_account
    assert create["pipelineJob"]["runtimeConfig"]["gcsOutputDirectory"] == v.pipeline_root
    _same_graph(create["pipelineJob"]["pipelineSpec"], job["pipelineSpec"], cfg.enable_cache)
    assert out["config_parameters"]["registry"] == cfg.registry
    # defaults from config
    r = _cli("schedule", "--config", VERTEX, "--spec", path, "--dry-run", env=_no_credentials_env(tmp_path))
    sched = json.loads(r.stdout)["request"]["schedule"]
    assert sched["cron"] == f"TZ={v.schedule.time_zone} {v.schedule.cron}"
    assert int(sched["maxConcurrentRunCount"]) == v.schedule.max_concurrent_runs


@pytest.mark.parametrize("command", [("submit",), ("schedule", "--cron", "0 3 * * 1")])
def test_without_credentials_the_real_commands_fail_with_one_line(compiled, tmp_path, command):
    path, _ = compiled
    r = _cli(*command, "--config", VERTEX, "--spec", path, env=_no_credentials_env(tmp_path))
    assert r.returncode != 0
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no Google Cloud credentials"), r.stderr


def test_missing_or_foreign_spec_and_bad_cron_are_one_line(tmp_path):
    r = _cli("submit", "--config", VERTEX, "--spec", tmp_path / "nope.json", "--dry-run")
    assert r.returncode != 0 and r.stderr.strip().splitlines() == [
        f"error: compiled pipeline '{tmp_path / 'nope.json'}' not found "
        f"(run `synthdetect compile --out {tmp_path / 'nope.json'}` first)"]
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps({"pipelineSpec": {"pipelineInfo": {"name": "other"}}}))
    r = _cli("schedule", "--config", VERTEX, "--spec", bad, "--dry-run")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "compiled for pipeline 'other'" in r.stderr
    r = _cli("schedule", "--config", VERTEX, "--spec", bad, "--cron", "every monday", "--dry-run")
    assert r.returncode != 0 and r.stderr.startswith("error: cron 'every monday' must have 5 fields")


def test_compile_without_a_vertex_section_is_one_line():
    r = _cli("compile", "--config", REPO / "configs" / "local.yaml", "--out", "/tmp/never.json")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"error: invalid config '{REPO / 'configs' / 'local.yaml'}': runner vertex needs a vertex: section "
        "(see configs/vertex.yaml)"]


def test_run_has_a_runner_option_and_vertex_points_to_compile():
    r = _cli("run", "--help")
    assert "--runner [local|vertex]" in r.stdout
    r = _cli("run", "--runner", "vertex", "--config", VERTEX)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1
    assert "synthdetect compile" in r.stderr and "synthdetect submit" in r.stderr


# ------------------------------------------------------------------------------- config section
def _vertex_yaml(tmp_path, **changes) -> Path:
    raw = yaml.safe_load(VERTEX.read_text())
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[p]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    p = tmp_path / "v.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


@pytest.mark.parametrize("changes, fragment", [
    ({"vertex__service_account": "/home/me/key.json"}, "vertex.service_account: must be a service account email"),
    ({"vertex__pipeline_root": "runs/vertex"}, "vertex.pipeline_root: must be a gs:// path"),
    ({"vertex__training": {"accelerator_type": "NVIDIA_TESLA_T4", "accelerator_count": 0}},
     "accelerator_count must be >= 1"),
    ({"vertex__training": {"accelerator_type": "NVIDIA_GTX_1080"}}, "vertex.training.accelerator_type"),
    ({"vertex__training": {"accelerator_type": "TPU_V3", "accelerator_count": 8}}, "images.tpu is required"),
    ({"vertex__dataflow": {"extra_args": ["--service_account_key_file=/k.json"]}}, "looks like a credential"),
    ({"vertex__credentials": "abc"}, "vertex.credentials: unknown key"),
    ({"vertex__images": {"cpu": "not an image"}}, "vertex.images.cpu"),
    ({"vertex__schedule": {"cron": "0 3 * *"}}, "must have 5 fields"),
    ({"vertex": None}, "runner vertex needs a vertex: section"),
    ({"registry": "registry"}, "registry: must be gs://… or vertex://… with runner vertex"),
    ({"data__input": "data/sample"}, "data.input: must be a gs:// path with runner vertex"),
])
def test_bad_vertex_config_gives_one_line(tmp_path, changes, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(_vertex_yaml(tmp_path, **changes))
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_worker_pools_and_beam_args_follow_the_config(tmp_path):
    from pipeline.vertex import dataflow_args, worker_pool_specs
    cpu = load_config(_vertex_yaml(tmp_path, vertex__training={"machine_type": "n2-standard-16",
                                                               "accelerator_type": None, "accelerator_count": 0}))
    (pool,) = worker_pool_specs(cpu)
    assert pool["machine_spec"] == {"machine_type": "n2-standard-16"}
    assert pool["container_spec"]["image_uri"] == cpu.vertex.images.cpu
    tpu = load_config(_vertex_yaml(tmp_path, vertex__training={"machine_type": "cloud-tpu", "accelerator_type": "TPU_V3",
                                                               "accelerator_count": 8},
                                   vertex__images={"cpu": "eu.gcr.io/p/cpu:1", "tpu": "eu.gcr.io/p/tpu:1"}))
    assert worker_pool_specs(tpu)[0]["container_spec"]["image_uri"] == "eu.gcr.io/p/tpu:1"
    assert worker_pool_specs(tpu)[0]["machine_spec"]["accelerator_count"] == 8
    private = load_config(_vertex_yaml(tmp_path, vertex__dataflow={"subnetwork": "regions/us-central1/subnetworks/s",
                                                                   "use_public_ips": False, "extra_args": ["--num_workers=2"]}))
    args = dataflow_args(private)
    assert "--no_use_public_ips" in args and "--subnetwork=regions/us-central1/subnetworks/s" in args
    assert args[-1] == "--num_workers=2"
    assert f"--temp_location={private.vertex.pipeline_root}/dataflow/tmp" in args  # derived default
    direct = load_config(_vertex_yaml(tmp_path, vertex__dataflow={"enabled": False}))
    assert dataflow_args(direct) == direct.beam_args


def test_held_out_sets_are_compiled_into_the_spec(tmp_path):
    """Held-out inputs (gs:// only with runner vertex) reach ImageExampleGen, the Evaluator's splits and
    ReleaseCheck's parameters of the compiled Vertex spec; a local held-out path is refused in one line."""
    cfg = _vertex_yaml(tmp_path, evaluation={"holdout_sets": [{"name": "unseen", "input": "gs://my-bucket/unseen/"}],
                                             "leave_out": {"field": "source", "value": "ml72", "name": "ml72"}},
                       thresholds__min_holdout_auc={"unseen": 0.8})
    out = tmp_path / "pipeline.json"
    r = _cli("compile", "--config", cfg, "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    tasks = json.loads(out.read_text())["pipelineSpec"]["root"]["dag"]["tasks"]
    text = {name: json.dumps(task["inputs"]) for name, task in tasks.items()}
    assert "gs://my-bucket/unseen/" in text["ImageExampleGen"] and "ml72" in text["ImageExampleGen"]
    assert "holdout_unseen" in text["Evaluator"] and "holdout_ml72" in text["Evaluator"]
    assert "unseen" in text["ReleaseCheck"] and "min_holdout_auc" in text["ReleaseCheck"]
    local = _vertex_yaml(tmp_path, evaluation={"holdout_sets": [{"name": "unseen", "input": "/data/unseen"}]})
    with pytest.raises(ConfigError) as e:
        load_config(local)
    assert "evaluation.holdout_sets: unseen: input must be a gs:// path" in str(e.value)
