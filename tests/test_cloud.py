"""Google Cloud: the compiled Vertex pipeline spec, submit/schedule requests (dry run), the
no-credentials error, and the vertex: config section. Nothing here talks to Google Cloud."""
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from schemas.config import ConfigError, load_config
from tests.conftest import REPO
from tests.helpers import CLI, no_adc_env

VERTEX = REPO / "configs" / "vertex.yaml"
BEAM_COMPONENTS = ("ImageExampleGen", "StatisticsGen", "Transform", "Evaluator", "ProductionEvaluator")
TRAINERS = ("Trainer_vgg16_finetune", "Trainer_baseline")


def _cli(*args, env=None, cwd=REPO):
    return subprocess.run([CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=env)


@pytest.fixture(scope="module")
def cfg():
    return load_config(VERTEX)


@pytest.fixture(scope="module")
def compiled(vertex_spec, cfg):
    return vertex_spec, json.loads(vertex_spec.read_text())


def _executor(job: dict, task: str) -> dict:
    ps = job["pipelineSpec"]
    label = ps["components"][ps["root"]["dag"]["tasks"][task]["componentRef"]["name"]]["executorLabel"]
    return ps["deploymentSpec"]["executors"][label]["container"]


def _same_graph(sent: dict, compiled: dict, enable_cache: bool) -> None:
    """The request carries the compiled spec; the SDK only adds each task's caching option
    (`enable_cache`, except for the registry steps, which never reuse a cached result)."""
    from pipeline.pipeline import NEVER_CACHED
    tasks = sent["root"]["dag"]["tasks"]
    caching = {name: t.pop("cachingOptions")["enableCache"] for name, t in tasks.items()}
    assert {caching[n] for n in tasks if n not in NEVER_CACHED} == {enable_cache}
    assert {caching[n] for n in NEVER_CACHED} == {False}
    assert sent["root"] == compiled["root"]
    assert sent["deploymentSpec"] == compiled["deploymentSpec"]


def _param(job: dict, task: str, name: str) -> str:
    p = job["pipelineSpec"]["root"]["dag"]["tasks"][task]["inputs"]["parameters"][name]
    return p["runtimeValue"]["constantValue"]["stringValue"]


def _default_value(cfg, task: str, prop: str) -> str:
    """A parameterised exec property's value with every runtime parameter at its default (what the
    RuntimeParameters step outputs; tests below check the spec wires it to `task`)."""
    from pipeline.parameters import OUTPUTS, exec_properties_of
    (key,) = [k for k, targets in OUTPUTS.items() if targets.get(task) == prop]
    return exec_properties_of(cfg)[key]


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
    assert tasks == {c.id for c in create_components(cfg)} | {"RuntimeParameters"}
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
        cc = json.loads(_default_value(cfg, task, "custom_config"))
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
    assert json.loads(_default_value(cfg, "Trainer_baseline", "custom_config"))["weights"] == "none"
    assert _param(job, "Trainer_vgg16_finetune", "run_fn") == "components.trainer.run_fn.run_fn"
    assert _param(job, "Transform", "preprocessing_fn") == "components.transform.preprocessing.preprocessing_fn"
    # the schema file is read from the source tree inside the image, not from this checkout
    assert _param(job, "ImportSchemaGen", "schema_file") == "/synthdetect/schemas/schema.pbtxt"
    assert str(REPO) not in path.read_text()


@pytest.mark.parametrize("cache", [False, True])
def test_submit_dry_run_prints_the_create_request(compiled, cfg, tmp_path, cache):
    """With enable_cache true every task may reuse a cached result except ProductionModel and
    RegistryPusher (the same rule as local runs)."""
    path, job = compiled
    r = _cli("submit", "--config", VERTEX, "--spec", path, "--dry-run", "--set", f"enable_cache={str(cache).lower()}",
             env=no_adc_env(tmp_path))
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
    _same_graph(pj["pipelineSpec"], job["pipelineSpec"], cache)
    params = out["config_parameters"]
    assert params["data.input"] == cfg.data.input and params["model"]["image_size"] == cfg.model.image_size


def test_schedule_dry_run_prints_the_schedule_request(compiled, cfg, tmp_path):
    path, job = compiled
    r = _cli("schedule", "--config", VERTEX, "--spec", path, "--cron", "0 3 * * 1", "--max-concurrent", "1",
             "--dry-run", env=no_adc_env(tmp_path))
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
    r = _cli("schedule", "--config", VERTEX, "--spec", path, "--dry-run", env=no_adc_env(tmp_path))
    sched = json.loads(r.stdout)["request"]["schedule"]
    assert sched["cron"] == f"TZ={v.schedule.time_zone} {v.schedule.cron}"
    assert int(sched["maxConcurrentRunCount"]) == v.schedule.max_concurrent_runs


@pytest.mark.parametrize("command", [("submit",), ("schedule", "--cron", "0 3 * * 1")])
def test_without_credentials_the_real_commands_fail_with_one_line(compiled, tmp_path, command):
    path, _ = compiled
    r = _cli(*command, "--config", VERTEX, "--spec", path, env=no_adc_env(tmp_path))
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


@pytest.mark.parametrize("cron, field", [("61 3 * * 1", "minute field '61'"), ("0 24 * * *", "hour field '24'"),
                                         ("0 3 0 * *", "day-of-month field '0'"), ("0 3 * 13 *", "month field '13'"),
                                         ("0 3 * * 8", "day-of-week field '8'"), ("0 3 * * MON-XYZ", "day-of-week"),
                                         ("*/0 * * * *", "minute field '*/0'")])
def test_cron_is_validated_field_by_field(compiled, cron, field):
    spec, _ = compiled
    r = _cli("schedule", "--config", VERTEX, "--spec", spec, "--cron", cron, "--dry-run")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith(f"error: cron {cron!r}: the ")
    assert field in r.stderr
    # the same check on vertex.schedule.cron in a config file
    with pytest.raises(ConfigError, match=f"vertex.schedule.cron: cron {re.escape(repr(cron))}: the "):
        load_config(VERTEX, {"vertex": {"schedule": {"cron": cron}}})


@pytest.mark.parametrize("cron", ["0 3 * * 1", "*/15 9-17 * * mon-fri", "0 0 1 jan,jul *", "30 2 * * 7"])
def test_valid_crons_are_accepted(cron):
    assert load_config(VERTEX, {"vertex": {"schedule": {"cron": cron}}}).vertex.schedule.cron == cron


def test_compile_without_a_vertex_section_is_one_line():
    r = _cli("compile", "--config", REPO / "configs" / "local.yaml", "--out", "/tmp/never.json")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"error: invalid config '{REPO / 'configs' / 'local.yaml'}': runner vertex needs a vertex: section "
        "(see configs/vertex.yaml)"]


def test_run_has_a_runner_option_and_vertex_points_to_compile():
    r = _cli("run", "--help")
    assert "--runner [local|vertex]" in r.stdout
    # the help says what happens (issue 27.7: it said "vertex runs through compile + submit")
    assert "vertex is not run from this command" in " ".join(r.stdout.split())
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
    tpu = load_config(_vertex_yaml(tmp_path, vertex__training={"machine_type": "cloud-tpu",
                                                               "accelerator_type": "TPU_V3", "accelerator_count": 8},
                                   vertex__images={"cpu": "eu.gcr.io/p/cpu:1", "tpu": "eu.gcr.io/p/tpu:1"}))
    assert worker_pool_specs(tpu)[0]["container_spec"]["image_uri"] == "eu.gcr.io/p/tpu:1"
    assert worker_pool_specs(tpu)[0]["machine_spec"]["accelerator_count"] == 8
    private = load_config(_vertex_yaml(tmp_path, vertex__dataflow={"subnetwork": "regions/us-central1/subnetworks/s",
                                                                   "use_public_ips": False,
                                                                   "extra_args": ["--num_workers=2"]}))
    args = dataflow_args(private)
    assert "--no_use_public_ips" in args and "--subnetwork=regions/us-central1/subnetworks/s" in args
    assert args[-1] == "--num_workers=2"
    assert f"--temp_location={private.vertex.pipeline_root}/dataflow/tmp" in args  # derived default
    direct = load_config(_vertex_yaml(tmp_path, vertex__dataflow={"enabled": False}))
    assert dataflow_args(direct) == direct.beam_args


# ------------------------------------------------------------------------------------- placement
def test_the_placement_chooses_where_each_step_runs(cfg):
    """One graph, two placements: here (TFX's Trainer, the config's values) and on Vertex (Vertex AI
    training, Dataflow args on every Beam component, paths in the image, the runtime parameters)."""
    from tfx import v1 as tfx
    from tfx.dsl.components.base.base_beam_component import BaseBeamComponent
    from tfx.dsl.placeholder.placeholder import Placeholder

    from pipeline.parameters import OUTPUTS
    from pipeline.pipeline import RUNTIME_PARAMETERS, create_components, trainer_config
    from pipeline.vertex import VertexPlacement, dataflow_args

    local = {c.id: c for c in create_components(cfg)}
    placed = create_components(cfg, VertexPlacement(cfg))
    vertex = {c.id: c for c in placed}
    assert placed[0].id == RUNTIME_PARAMETERS and set(vertex) == set(local) | {RUNTIME_PARAMETERS}
    for task in TRAINERS:
        assert type(local[task]) is tfx.components.Trainer
        assert type(vertex[task]) is tfx.extensions.google_cloud_ai_platform.Trainer
        assert json.loads(local[task].exec_properties["custom_config"]) == json.loads(
            json.dumps(trainer_config(cfg, task.split("_", 1)[1])))
    for targets in OUTPUTS.values():
        for task, prop in targets.items():
            assert isinstance(vertex[task].exec_properties[prop], Placeholder), (task, prop)
            assert not isinstance(local[task].exec_properties[prop], Placeholder), (task, prop)
    beam = sorted(i for i, c in vertex.items() if isinstance(c, BaseBeamComponent))
    assert beam == sorted(BEAM_COMPONENTS)
    for task in beam:
        args = vertex[task].executor_spec.beam_pipeline_args
        assert args[len(args) - len(dataflow_args(cfg)):] == dataflow_args(cfg), task
        assert "--runner=DataflowRunner" not in local[task].executor_spec.beam_pipeline_args, task
    assert vertex["ImportSchemaGen"].exec_properties["schema_file"] == "/synthdetect/schemas/schema.pbtxt"
    assert local["ImportSchemaGen"].exec_properties["schema_file"] == str(REPO / "schemas" / "schema.pbtxt")


def test_the_vertex_placement_maps_paths_and_checks_the_parameter_wiring(cfg, tmp_path):
    from pipeline.vertex import CloudError, VertexPlacement
    placement = VertexPlacement(cfg)
    assert placement.path("gs://b/x", "A.p") == "gs://b/x" and placement.path("relative", "A.p") == "relative"
    assert placement.path(str(REPO / "configs" / "vertex.yaml"), "A.p") == "/synthdetect/configs/vertex.yaml"
    with pytest.raises(CloudError, match=r"^A\.p: local path '/elsewhere/f' does not exist on Vertex; use a gs://"):
        placement.path("/elsewhere/f", "A.p")
    with pytest.raises(CloudError, match=r"is not part of the image"):
        placement.path(str(REPO / "data" / "sample"), "A.p")
    # a parameterised exec property that no step asked for is a bug in the graph, found when building it
    with pytest.raises(RuntimeError, match="runtime parameter outputs that no step reads: Evaluator.eval_config, "):
        placement.components([])


# ------------------------------------------------------------------------------ runtime parameters
def _threshold_names() -> set[str]:
    from schemas.config import ThresholdConfig
    return set(ThresholdConfig.model_fields)


def test_the_spec_declares_runtime_parameters_with_the_config_as_defaults(compiled, cfg):
    _, job = compiled
    params = job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    # every gate threshold (read from the schema: new thresholds become parameters without code changes)
    assert set(params) == {"data_input", "epochs", "batch_size", "learning_rate", "image_size"} | _threshold_names()
    assert {"min_holdout_auc", "max_generalisation_gap"} <= set(params)
    assert params["epochs"]["type"] == "INT" and params["learning_rate"]["type"] == "DOUBLE"
    assert params["data_input"]["type"] == "STRING" and params["min_auc"]["type"] == "DOUBLE"
    defaults = job["runtimeConfig"]["parameters"]
    assert defaults["epochs"] == {"intValue": str(cfg.model.epochs)}
    assert defaults["data_input"] == {"stringValue": cfg.data.input}
    assert defaults["min_auc"] == {"doubleValue": cfg.thresholds.min_auc}
    assert defaults["min_holdout_auc"] == {"stringValue": "null"}   # None-able threshold: JSON text
    # the first step takes them all; the parameterised exec properties are its outputs
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    step = tasks["RuntimeParameters"]["inputs"]["parameters"]
    assert {n: step[n]["componentInputParameter"] for n in params} == {n: n for n in params}
    from pipeline.parameters import OUTPUTS
    for key, targets in OUTPUTS.items():
        for task, prop in targets.items():
            assert tasks[task]["inputs"]["parameters"][prop] == {
                "taskOutputParameter": {"outputParameterKey": key, "producerTask": "RuntimeParameters_task"}}, task
            assert "RuntimeParameters" in tasks[task]["dependentTasks"]
    assert _executor(job, "RuntimeParameters")["args"][1] == "pipeline.runtime_parameters.Executor"


def test_the_parameters_step_outputs_what_compiling_the_config_would_have(cfg, tmp_path):
    """The RuntimeParameters executor (TFX's String artifacts on disk): at the defaults it writes the
    exec properties compiling the config gives; a parameter changes exactly its own value."""
    from tfx.types import standard_artifacts

    from pipeline import parameters
    from pipeline.parameters import OUTPUTS, default_values, exec_properties_of
    from pipeline.runtime_parameters import Executor

    def run(values: dict) -> dict:
        out = {}
        for key in OUTPUTS:
            a = standard_artifacts.String()
            a.uri = str(tmp_path / f"{len(list(tmp_path.iterdir()))}-{key}")
            out[key] = [a]
        Executor().Do({}, out, {parameters.CONFIG_KEY: parameters.config_json(cfg), **values})
        return {k: v[0].read() for k, v in out.items()}

    defaults = default_values(cfg)
    assert run(defaults) == exec_properties_of(cfg)
    changed = run({**defaults, "epochs": 1, "min_auc": 0.5, "min_holdout_auc": "0.7",
                   "data_input": "gs://other-bucket/images"})
    cand, base = json.loads(changed["candidate_config"]), json.loads(exec_properties_of(cfg)["candidate_config"])
    assert cand == {**base, "epochs": 1}
    assert json.loads(changed["thresholds_json"]) == {**cfg.thresholds.model_dump(), "min_auc": 0.5,
                                                      "min_holdout_auc": 0.7}
    bounds = {json.dumps(t["threshold"]["value_threshold"]["lower_bound"]) for m in
              json.loads(changed["eval_config"])["metrics_specs"][0]["metrics"]
              for t in m.get("per_slice_thresholds", [])}
    assert bounds == {"0.5", json.dumps(cfg.thresholds.min_accuracy)}   # the TFMA gate too: AUC >= 0.5 now
    assert changed["input_base"] == "gs://other-bucket/images" and '"*"' in changed["input_config"]
    # a value the config schema refuses fails the step with one line naming it
    with pytest.raises(ValueError, match=r"^runtime parameters: model.epochs: "):
        run({**defaults, "epochs": 0})


def test_the_aiplatform_sdk_accepts_the_spec_with_parameter_values(compiled, cfg):
    """Offline: the SDK's PipelineJob built from the compiled file (anonymous credentials, nothing sent)."""
    from google.auth import credentials as ga_credentials
    from google.cloud import aiplatform

    path, _ = compiled

    def job(values):
        return aiplatform.PipelineJob(display_name="t", template_path=str(path), parameter_values=values,
                                      project=cfg.vertex.project, location=cfg.vertex.region,
                                      credentials=ga_credentials.AnonymousCredentials())
    j = job({"epochs": 1, "min_auc": 0.8, "data_input": "gs://b/images"})
    params = j._gca_resource.runtime_config.parameters  # noqa: SLF001 - the job's request (as the dry run)
    assert params["epochs"].int_value == 1 and params["min_auc"].double_value == 0.8
    assert params["data_input"].string_value == "gs://b/images"
    assert params["batch_size"].int_value == cfg.model.batch_size   # the compiled default
    with pytest.raises(ValueError, match="not found in the pipeline job input definitions"):
        job({"nope": 1})


def test_param_on_submit_and_schedule_is_checked_and_shown_in_the_dry_run(compiled, cfg, tmp_path):
    path, _ = compiled
    env = no_adc_env(tmp_path)
    r = _cli("submit", "--config", VERTEX, "--spec", path, "--dry-run", "--param", "epochs=1",
             "--param", "min_auc=0.8", "--param", "min_holdout_auc=0.75", env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["parameters"]["epochs"] == 1 and out["parameters"]["min_auc"] == 0.8
    assert out["parameters"]["batch_size"] == cfg.model.batch_size
    sent = out["request"]["pipelineJob"]["runtimeConfig"]["parameters"]
    assert sent["epochs"] == {"intValue": "1"} and sent["min_holdout_auc"] == {"stringValue": "0.75"}
    r = _cli("schedule", "--config", VERTEX, "--spec", path, "--dry-run", "--param", "data_input=gs://b/new",
             env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["parameters"]["data_input"] == "gs://b/new"
    create = out["request"]["schedule"]["createPipelineJobRequest"]["pipelineJob"]
    assert create["runtimeConfig"]["parameters"]["data_input"] == {"stringValue": "gs://b/new"}


@pytest.mark.parametrize("param, message", [
    ("epoch=1", "--param epoch: the compiled pipeline has no parameter 'epoch' (parameters: batch_size, "),
    ("epochs=1.5", "--param epochs=1.5: must be an integer"),
    ("epochs=true", "--param epochs=true: must be an integer"),
    ("min_auc=high", "--param min_auc=high: must be a number"),
    ("epochs=0", "--param: model.epochs: Input should be greater than or equal to 1"),
    ("min_auc=1.5", "--param: thresholds.min_auc: Input should be less than or equal to 1"),
    ("data_input=/local/images", "--param: data.input: must be a gs:// path with runner vertex"),
    ("epochs", "--param expects KEY=VALUE"),
])
def test_a_bad_param_is_one_line(compiled, tmp_path, param, message):
    path, _ = compiled
    r = _cli("submit", "--config", VERTEX, "--spec", path, "--dry-run", "--param", param,
             env=no_adc_env(tmp_path))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith(f"error: {message}"), r.stderr


# ------------------------------------------------------------------- ImageExampleGen caching on Vertex
def test_example_gen_on_vertex_runs_our_fingerprint_driver(compiled):
    _, job = compiled
    hook = _executor(job, "ImageExampleGen")["lifecycle"]["preCacheCheck"]
    assert hook["command"] == ["python", "-m", "components.ingest.vertex_driver"]
    assert hook["args"][:2] == ["--json_serialized_invocation_args", "{{$}}"]
    # no other step has a pre-cache hook; TFX's stock driver is named nowhere
    assert "file_based_example_gen.driver" not in json.dumps(job)


def test_the_pre_cache_patch_changes_only_the_example_gen_hook():
    """use_our_example_gen_driver, the one change made to the compiled spec: the command of
    ImageExampleGen's pre-cache check (found through its task, whatever its executor label)."""
    from pipeline.vertex import use_our_example_gen_driver

    def executor(hook: bool) -> dict:
        container = {"image": "i", "command": ["python", "-m", "tfx.run"], "args": ["--x"]}
        if hook:
            container["lifecycle"] = {"preCacheCheck": {"command": ["python", "-m", "tfx.driver"], "args": ["{{$}}"]}}
        return {"container": container}
    job = {"pipelineSpec": {
        "root": {"dag": {"tasks": {"ImageExampleGen": {"componentRef": {"name": "gen"}},
                                   "Other": {"componentRef": {"name": "other"}}}}},
        "components": {"gen": {"executorLabel": "gen_exec"}, "other": {"executorLabel": "other_exec"}},
        "deploymentSpec": {"executors": {"gen_exec": executor(True), "other_exec": executor(True)}}}}
    before = json.loads(json.dumps(job))
    use_our_example_gen_driver(job)
    hook = job["pipelineSpec"]["deploymentSpec"]["executors"]["gen_exec"]["container"]["lifecycle"]["preCacheCheck"]
    assert hook == {"command": ["python", "-m", "components.ingest.vertex_driver"], "args": ["{{$}}"]}
    hook["command"] = ["python", "-m", "tfx.driver"]
    assert job == before   # nothing else changed
    del job["pipelineSpec"]["deploymentSpec"]["executors"]["gen_exec"]["container"]["lifecycle"]
    with pytest.raises(KeyError):   # TFX stopped giving ImageExampleGen a pre-cache check: compiling fails
        use_our_example_gen_driver(job)


def _driver_input(tmp_path, data, name: str):
    """The ExecutorInput Vertex gives ImageExampleGen's pre-cache check (exec properties from the real
    component, an Examples output artifact, the output metadata file)."""
    from google.protobuf import message
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.utils import proto_utils

    from components.ingest.component import make_example_gen
    cfg = load_config(REPO / "configs" / "local.yaml", {"data": {"input": str(data)}, "model": {"weights": "none"}})
    ei = pipeline_spec_pb2.ExecutorInput()
    for key, value in make_example_gen(cfg).exec_properties.items():
        if value is None:
            continue
        # pipeline spec 2.0 (what `synthdetect compile` writes): typed kubeflow Values in inputs.parameters
        if isinstance(value, message.Message):
            ei.inputs.parameters[key].string_value = proto_utils.proto_to_json(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            ei.inputs.parameters[key].int_value = value
        else:
            ei.inputs.parameters[key].string_value = str(value)
    art = ei.outputs.artifacts["examples"].artifacts.add()
    art.uri, art.type.schema_title = str(tmp_path / name / "examples"), "tfx.Examples"
    ei.outputs.output_file = str(tmp_path / name / "executor_output.json")
    return ei


def test_the_vertex_driver_fingerprints_every_input_file(tmp_path):
    """A file replaced under the same folder changes our fingerprint (so Vertex's cache misses);
    TFX's stock driver, which fingerprints the top-level glob matches, does not notice."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from PIL import Image
    from tfx.orchestration.kubeflow.v2.file_based_example_gen import driver as tfx_driver

    from components.ingest.vertex_driver import run_driver
    data = tmp_path / "data"
    for i, label in enumerate(["real", "real", "synthesized", "synthesized"]):
        (data / label).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 40), (60 * i, 10, 10)).save(data / label / f"{i}.png")

    def ours(name):
        ei = _driver_input(tmp_path, data, name)
        fp = run_driver(ei)
        out = json_format.Parse(Path(ei.outputs.output_file).read_text(), pipeline_spec_pb2.ExecutorOutput())
        assert out.parameter_values["input_fingerprint"].string_value == fp
        assert out.artifacts["examples"].artifacts[0].metadata["input_fingerprint"] == fp
        assert out.parameter_values["input_config"].string_value   # TFX's part of the driver ran too
        return fp

    def stock(name):
        ei = _driver_input(tmp_path, data, name)
        tfx_driver._run_driver(ei)  # noqa: SLF001 - TFX's stock driver body
        out = json_format.Parse(Path(ei.outputs.output_file).read_text(), pipeline_spec_pb2.ExecutorOutput())
        return out.parameter_values["input_fingerprint"].string_value

    before, stock_before = ours("a"), stock("b")
    assert ours("c") == before                       # nothing changed: the cache may be used
    Image.new("RGB", (48, 48), (0, 200, 0)).save(data / "real" / "0.png")   # replaced in place
    assert ours("d") != before
    assert stock("e") == stock_before                # what the stock driver would have reused


def test_held_out_sets_are_compiled_into_the_spec(tmp_path):
    """Held-out inputs (gs:// only with runner vertex) reach ImageExampleGen, the Evaluator's splits and
    ReleaseCheck's parameters of the compiled Vertex spec; a local held-out path is refused in one line."""
    cfg = _vertex_yaml(tmp_path, evaluation={"holdout_sets": [{"name": "unseen", "input": "gs://my-bucket/unseen/"}],
                                             "leave_out": {"field": "source", "value": "ml72", "name": "ml72"}},
                       thresholds__min_holdout_auc={"unseen": 0.8})
    out = tmp_path / "pipeline.json"
    r = _cli("compile", "--config", cfg, "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    job = json.loads(out.read_text())
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    text = {name: json.dumps(task["inputs"]) for name, task in tasks.items()}
    assert "gs://my-bucket/unseen/" in text["ImageExampleGen"] and "ml72" in text["ImageExampleGen"]
    assert "holdout_unseen" in text["Evaluator"] and "holdout_ml72" in text["Evaluator"]
    assert '[\\"unseen\\", \\"ml72\\"]' in text["ReleaseCheck"]          # the held-out sets it scores
    # the held-out thresholds are runtime parameters (issue 12) with the config's values as defaults,
    # reaching ReleaseCheck through the RuntimeParameters step
    assert "RuntimeParameters_task" in text["ReleaseCheck"]
    assert "min_holdout_auc" in job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    assert json.loads(job["runtimeConfig"]["parameters"]["min_holdout_auc"]["stringValue"]) == {"unseen": 0.8}
    local = _vertex_yaml(tmp_path, evaluation={"holdout_sets": [{"name": "unseen", "input": "/data/unseen"}]})
    with pytest.raises(ConfigError) as e:
        load_config(local)
    assert "evaluation.holdout_sets: unseen: input must be a gs:// path" in str(e.value)
