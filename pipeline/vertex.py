"""The synthdetect pipeline on Google Cloud: Vertex AI Pipelines, Dataflow, Vertex AI training jobs.

The graph is `pipeline.pipeline.create_components(cfg, VertexPlacement(cfg))`: the same graph, placed
on Google Cloud when it is built:

* every component runs in the pipeline image (`vertex.images.cpu`, infra/Dockerfile), which has this
  package installed, so `run_fn`/`preprocessing_fn` resolve by module path, and local paths inside
  this checkout map to the same file in the image;
* Beam components (ImageExampleGen, StatisticsGen, Transform, Evaluator) get Dataflow pipeline args
  (the same image is the Dataflow worker SDK container);
* each Trainer is `tfx.extensions.google_cloud_ai_platform.Trainer`: it runs as a Vertex AI custom job
  on the worker pool of `vertex.training` with `vertex.images.gpu` (or `tpu`);
* the data input, training settings and gate thresholds are runtime parameters: the first step,
  RuntimeParameters (pipeline/runtime_parameters.py), outputs the exec properties they make.

Compiling needs TFX and kfp-pipeline-spec, no credentials. Submitting/scheduling builds the request
with the Vertex AI SDK exactly as `PipelineJob.submit` / `PipelineJobSchedule.create` would; with
`dry_run` it is returned instead of sent.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pipeline.parameters import OUTPUTS, worker_pool_specs  # noqa: F401 - worker_pool_specs: the trainers' pool
from pipeline.pipeline import (EXAMPLE_GEN, LocalPlacement,
                               create_components)
from schemas.config import PipelineConfig, is_gcs

REPO = Path(__file__).resolve().parents[1]
# Where infra/Dockerfile and infra/Dockerfile.gpu put this source tree (and install it from).
CONTAINER_SRC = "/synthdetect"
# The container entrypoint TFX uses for every component on Vertex (KubeflowV2DagRunner's default).
CONTAINER_COMMAND = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]


class CloudError(Exception):
    """A user-facing, one-line problem with the cloud setup (printed as `error: ...`)."""


# ---------------------------------------------------------------------------------------------- args
def dataflow_args(cfg: PipelineConfig) -> list[str]:
    """Beam pipeline args for the Beam components: Dataflow, or the configured local args."""
    v = cfg.vertex
    assert v is not None
    d = v.dataflow
    if not d.enabled:
        return list(cfg.beam_args)
    args = [
        "--runner=DataflowRunner",
        f"--project={v.project}",
        f"--region={v.region}",
        f"--service_account_email={v.service_account}",
        f"--temp_location={v.dataflow_temp()}",
        f"--staging_location={v.dataflow_staging()}",
        # Workers run the pipeline image: this package and every pinned dependency are already there.
        f"--sdk_container_image={v.images.cpu}",
        "--sdk_location=container",
        "--experiments=use_runner_v2",
        f"--machine_type={d.machine_type}",
        f"--max_num_workers={d.max_num_workers}",
        f"--disk_size_gb={d.disk_size_gb}",
    ]
    if d.subnetwork:
        args.append(f"--subnetwork={d.subnetwork}")
    if not d.use_public_ips:
        args.append("--no_use_public_ips")
    args += [f"--labels={k}={val}" for k, val in sorted(v.labels.items())]
    return args + list(d.extra_args)


# ------------------------------------------------------------------------------------------ pipeline
def _container_path(value: str, where: str) -> str:
    """Local paths inside this checkout map to the same file in the image; any other local path is a
    mistake on Vertex (it does not exist in the container)."""
    if is_gcs(value) or not os.path.isabs(value):
        return value
    try:
        rel = Path(value).resolve().relative_to(REPO)
    except ValueError:
        raise CloudError(f"{where}: local path {value!r} does not exist on Vertex; use a gs:// path") from None
    if rel.parts and rel.parts[0] in ("runs", "registry", "data", ".venv"):
        raise CloudError(f"{where}: {value!r} is not part of the image; use a gs:// path")
    return f"{CONTAINER_SRC}/{rel.as_posix()}"


class VertexPlacement(LocalPlacement):
    """The steps on Google Cloud (see the module docstring); the interface is LocalPlacement's."""

    def __init__(self, cfg: PipelineConfig):
        from pipeline.runtime_parameters import make_runtime_parameters
        super().__init__(cfg)
        self.beam_args = tuple(dataflow_args(cfg))
        self.step = make_runtime_parameters(cfg)
        self._feeds = {(component_id, prop): key for key, targets in OUTPUTS.items()
                       for component_id, prop in targets.items()}
        self._fed: set[tuple[str, str]] = set()

    def trainer_class(self) -> type:
        from tfx import v1 as tfx
        return tfx.extensions.google_cloud_ai_platform.Trainer

    def trainer(self, custom_config, **kwargs):
        if isinstance(custom_config, dict):
            return super().trainer(custom_config, **kwargs)
        # the RuntimeParameters step's output (a placeholder), which TFX's Trainer would JSON-encode
        # in __init__: it becomes the exec property as it is (TrainerSpec takes placeholders)
        trainer = self.trainer_class()(**kwargs)
        trainer.exec_properties["custom_config"] = custom_config
        return trainer

    def path(self, value: str, where: str) -> str:
        return _container_path(value, where)

    def parameter(self, component_id: str, prop: str, value):
        key = self._feeds.get((component_id, prop))
        if key is None:
            return value
        self._fed.add((component_id, prop))
        return self.step.outputs[key].future()[0].value

    def components(self, components: list) -> list:
        missing = sorted(f"{c}.{p}" for c, p in set(self._feeds) - self._fed)
        if missing:   # parameters.OUTPUTS names an exec property create_components did not ask for
            raise RuntimeError(f"runtime parameter outputs that no step reads: {', '.join(missing)}")
        return [self.step, *components]


def component_images(cfg: PipelineConfig) -> dict[str, str]:
    """Image of each pipeline step: the pipeline image everywhere (trainers launch their custom
    job from it; the job itself runs vertex.images.gpu)."""
    v = cfg.vertex
    assert v is not None
    from tfx.orchestration.kubeflow.v2 import pipeline_builder
    return {pipeline_builder.DEFAULT_IMAGE_PATH_KEY: v.images.cpu}


def create_vertex_pipeline(cfg: PipelineConfig):
    from tfx import v1 as tfx
    v = cfg.vertex
    assert v is not None
    return tfx.dsl.Pipeline(
        pipeline_name=cfg.pipeline_name,
        pipeline_root=v.pipeline_root,
        components=create_components(cfg, VertexPlacement(cfg)),
        enable_cache=cfg.enable_cache,
        # no metadata_connection_config: Vertex ML Metadata is managed by Vertex AI Pipelines
    )


def compile_pipeline(cfg: PipelineConfig, out: str) -> dict:
    """Writes the Vertex pipeline job spec (JSON, KubeflowV2DagRunner) to `out`; returns it."""
    if cfg.vertex is None:
        raise CloudError("the config has no vertex: section (see configs/vertex.yaml)")
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as v2

    out_path = Path(out).resolve()
    runner = v2.KubeflowV2DagRunner(
        config=v2.KubeflowV2DagRunnerConfig(
            display_name=cfg.vertex.display_name or cfg.pipeline_name,
            default_image=component_images(cfg),
            default_commands=CONTAINER_COMMAND),
        output_dir=str(out_path.parent), output_filename=out_path.name)
    from pipeline.parameters import default_values
    try:
        # the config's values are the runtime parameters' defaults (runtimeConfig.parameters)
        job = runner.run(create_vertex_pipeline(cfg), parameter_values=default_values(cfg), write_out=False)
    except ValueError as e:
        if "Invalid custom artifact type name" in str(e):
            name = str(e).rsplit(":", 1)[-1].strip()
            raise CloudError(f"cannot compile for Vertex: artifact type {name!r} is not a valid Vertex schema title "
                             "(it must look like 'namespace.Name', e.g. 'synthdetect.ReleaseCheck'): rename its "
                             "TYPE_NAME") from None
        raise
    use_our_example_gen_driver(job)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(job, sort_keys=True))
    return job


def use_our_example_gen_driver(job: dict) -> None:
    """ImageExampleGen's pre-cache check (the driver whose fingerprint enters Vertex's cache key)
    becomes ours: every input file, as locally (components/ingest/vertex_driver.py). The one change
    made to the compiled spec: KubeflowV2DagRunner hard-codes TFX's driver module for every
    FileBasedExampleGen, and nothing in the component chooses it."""
    from components.ingest.vertex_driver import MODULE
    ps = job["pipelineSpec"]
    label = ps["components"][ps["root"]["dag"]["tasks"][EXAMPLE_GEN]["componentRef"]["name"]]["executorLabel"]
    hook = ps["deploymentSpec"]["executors"][label]["container"]["lifecycle"]["preCacheCheck"]
    hook["command"] = ["python", "-m", MODULE]


# ---------------------------------------------------------------------------------- submit/schedule
def _credentials(dry_run: bool):
    """ADC for real requests (one clear error when there are none); anonymous for dry runs."""
    from google.auth import credentials as ga_credentials
    if dry_run:
        return ga_credentials.AnonymousCredentials()
    from components.gcloud import NoCredentials, credentials
    try:
        creds, _ = credentials()
    except NoCredentials as e:   # decided in about a second, not after google-auth's metadata probes
        raise CloudError(str(e)) from None
    return creds


def _check_spec(spec: str, cfg: PipelineConfig) -> dict:
    p = Path(spec)
    if not p.is_file():
        raise CloudError(f"compiled pipeline {spec!r} not found (run `synthdetect compile --out {spec}` first)")
    try:
        job = json.loads(p.read_text())
        name = job["pipelineSpec"]["pipelineInfo"]["name"]
    except (ValueError, KeyError, TypeError):
        raise CloudError(f"{spec!r} is not a compiled Vertex pipeline spec (synthdetect compile)") from None
    if name != cfg.pipeline_name:
        raise CloudError(f"{spec!r} was compiled for pipeline {name!r}, the config names {cfg.pipeline_name!r}")
    images = {ex.get("container", {}).get("image")
              for ex in job["pipelineSpec"].get("deploymentSpec", {}).get("executors", {}).values()}
    if cfg.vertex and images != {cfg.vertex.images.cpu}:
        raise CloudError(f"{spec!r} was compiled for image(s) {sorted(i for i in images if i)}, the config names "
                         f"{cfg.vertex.images.cpu!r}: compile again")
    return job


def spec_parameters(job: dict) -> dict[str, str]:
    """The compiled spec's pipeline parameters: name -> type (INT, DOUBLE, STRING; schema 2.1:
    NUMBER_INTEGER, NUMBER_DOUBLE, STRING)."""
    params = job["pipelineSpec"]["root"].get("inputDefinitions", {}).get("parameters", {})
    return {name: p.get("type") or p.get("parameterType") for name, p in params.items()}


_NAMES = {"INT": "an integer", "NUMBER_INTEGER": "an integer", "DOUBLE": "a number", "NUMBER_DOUBLE": "a number",
          "STRING": "a string"}


def parse_parameters(items: tuple[str, ...], job: dict, cfg: PipelineConfig) -> dict:
    """`--param KEY=VALUE` items -> parameter_values, checked against the compiled spec (names, types)
    and against the config schema (the values the run will validate: ranges, JSON thresholds)."""
    import yaml

    from pipeline import parameters
    declared = spec_parameters(job)
    values: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise CloudError(f"--param expects KEY=VALUE (e.g. epochs=1), got {item!r}")
        if key not in declared:
            names = ", ".join(sorted(declared)) or "none (compile again)"
            raise CloudError(f"--param {key}: the compiled pipeline has no parameter {key!r} (parameters: {names})")
        kind = declared[key]
        try:
            value = yaml.safe_load(raw) if kind != "STRING" else raw
        except yaml.YAMLError:
            value = raw
        if kind in ("INT", "NUMBER_INTEGER") and not (isinstance(value, int) and not isinstance(value, bool)):
            raise CloudError(f"--param {key}={raw}: must be {_NAMES[kind]}")
        if kind in ("DOUBLE", "NUMBER_DOUBLE"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CloudError(f"--param {key}={raw}: must be {_NAMES[kind]}")
            value = float(value)
        values[key] = value
    known = {k: v for k, v in values.items() if k in parameters.BY_NAME}
    if known:
        from pydantic import ValidationError

        from schemas.config import _merge, _one_line
        try:
            PipelineConfig.model_validate(_merge(cfg.model_dump(), parameters.overrides(known)))
        except ValidationError as e:
            raise CloudError(f"--param: {_one_line(e)}") from None
        except ValueError as e:
            raise CloudError(f"--param {e}") from None
    return values


def job_parameters(job: dict, given: dict) -> dict:
    """Every parameter's value for a run: the compiled defaults (runtimeConfig) with `given` over them."""
    rc = job.get("runtimeConfig", {})
    defaults = {k: next(iter(v.values())) for k, v in (rc.get("parameters") or {}).items()}
    defaults.update(rc.get("parameterValues") or {})
    kinds = spec_parameters(job)
    for k, v in defaults.items():   # KFP's intValue is a string in JSON
        if kinds.get(k) in ("INT", "NUMBER_INTEGER"):
            defaults[k] = int(v)
        elif kinds.get(k) in ("DOUBLE", "NUMBER_DOUBLE"):
            defaults[k] = float(v)
    return {**defaults, **given}


def _pipeline_job(cfg: PipelineConfig, spec: str, credentials, job_id: str | None = None,
                  parameter_values: dict | None = None):
    from google.cloud import aiplatform

    v = cfg.vertex
    assert v is not None
    _check_spec(spec, cfg)
    job = aiplatform.PipelineJob(
        display_name=v.display_name or cfg.pipeline_name,
        template_path=str(Path(spec).resolve()),
        job_id=job_id,
        pipeline_root=v.pipeline_root,
        parameter_values=parameter_values or {},   # the rest: the compiled defaults (the config's values)
        enable_caching=cfg.enable_cache,
        labels=dict(v.labels) or None,
        credentials=credentials,
        project=v.project,
        location=v.region,
    )
    never_cache_registry_tasks(job._gca_resource._pb.pipeline_spec)  # noqa: SLF001 - the request the SDK sends
    return job


def never_cache_registry_tasks(pipeline_spec) -> None:
    """The SDK sets every task's cachingOptions to `enable_caching`: the registry steps
    (pipeline.pipeline.NEVER_CACHED: resolving `production`, pushing) must run every time, as locally."""
    from pipeline.pipeline import NEVER_CACHED
    tasks = pipeline_spec["root"]["dag"]["tasks"]
    for name in NEVER_CACHED:
        if name in tasks:
            tasks[name]["cachingOptions"]["enableCache"] = False


def config_parameters(cfg: PipelineConfig) -> dict:
    """The config the spec was checked against (the runtime parameters' values are under "parameters")."""
    return {"pipeline_name": cfg.pipeline_name, "data.input": cfg.data.input, "registry": cfg.registry,
            "model": cfg.model.model_dump(), "thresholds": cfg.thresholds.model_dump(),
            "enable_cache": cfg.enable_cache}


def _request_dict(message) -> dict:
    from google.protobuf import json_format
    pb = getattr(message, "_pb", message)
    return json_format.MessageToDict(pb, preserving_proto_field_name=False)


def submit(cfg: PipelineConfig, spec: str, dry_run: bool = False, job_id: str | None = None,
           params: tuple[str, ...] = (), wait: bool = False, on_task=None, poll: float = 30.0) -> dict:
    """Creates a PipelineJob (projects.locations.pipelineJobs.create). Returns the request (dry run)
    or the created job's name and console link."""
    if cfg.vertex is None:
        raise CloudError("the config has no vertex: section (see configs/vertex.yaml)")
    v = cfg.vertex
    compiled = _check_spec(spec, cfg)
    values = parse_parameters(params, compiled, cfg)
    creds = _credentials(dry_run)
    job = _pipeline_job(cfg, spec, creds, job_id, values)
    if dry_run:
        # What PipelineJob.submit(service_account=..., network=...) sets before it calls
        # JobServiceClient.create_pipeline_job(parent, pipeline_job, pipeline_job_id).
        job._gca_resource.service_account = v.service_account  # noqa: SLF001 - dry run: the request PipelineJob.submit would send
        if v.network:
            job._gca_resource.network = v.network  # noqa: SLF001 - as above
        return {"method": "google.cloud.aiplatform.v1.PipelineService.CreatePipelineJob",
                "spec": str(Path(spec).resolve()), "config_parameters": config_parameters(cfg),
                "parameters": job_parameters(compiled, values),
                "request": {"parent": job._parent, "pipelineJobId": job.job_id,  # noqa: SLF001 - as above
                            "pipelineJob": _request_dict(job._gca_resource)}}  # noqa: SLF001 - as above
    try:
        job.submit(service_account=v.service_account, network=v.network)
    except Exception as e:  # noqa: BLE001 - API errors become one line
        raise CloudError(f"submitting to Vertex AI failed: {_first_line(e)}") from None
    result = {"name": job.resource_name, "console": job._dashboard_uri()}  # noqa: SLF001 - the SDK's console link (no public accessor)
    if wait:
        import time

        def fetch():
            job._sync_gca_resource()  # noqa: SLF001 - the SDK's refresh (no public method)
            return job.gca_resource
        try:
            result["job"] = wait_for_job(fetch, on_task or (lambda task, state: None), time.sleep, poll)
        except Exception as e:  # noqa: BLE001 - polling errors become one line (the job keeps running)
            raise CloudError(f"waiting for {job.resource_name} failed: {_first_line(e)}") from None
    return result


def schedule_cron(cron: str | None, time_zone: str | None, s) -> str:
    """The cron Vertex gets, always with its zone: `TZ=ZONE m h dom mon dow`. `cron` (or
    vertex.schedule.cron) may carry a `TZ=`/`CRON_TZ=` prefix; else --time-zone, else
    vertex.schedule.time_zone."""
    from schemas.config import check_time_zone, split_cron_tz
    try:
        zone, expr = split_cron_tz(cron or s.cron)
        if time_zone is not None:
            time_zone = check_time_zone(time_zone)
            if zone and zone != time_zone:
                raise ValueError(f"--cron {cron!r} and --time-zone {time_zone!r} names two time zones: give one")
    except ValueError as e:
        raise CloudError(str(e)) from None
    return f"TZ={zone or time_zone or s.time_zone} {expr}"


# UpdateSchedule replaces these fields of the schedule with the same display name (the request type,
# CreatePipelineJob, stays: Vertex refuses to change it)
SCHEDULE_UPDATE_MASK = ("cron", "max_concurrent_run_count", "max_run_count", "create_pipeline_job_request")


def schedule_summary(resource) -> dict:
    """A Vertex AI Schedule resource (google.cloud.aiplatform_v1 Schedule, as the SDK returns it) ->
    {name, id, display_name, state, cron, pipeline, next_run, last_run, started_runs, max_concurrent}."""
    from google.protobuf import json_format
    d = json_format.MessageToDict(getattr(resource, "_pb", resource), preserving_proto_field_name=True)
    job = d.get("create_pipeline_job_request", {}).get("pipeline_job", {})
    return {"name": d.get("name"), "id": (d.get("name") or "").rsplit("/", 1)[-1],
            "display_name": d.get("display_name"), "state": d.get("state", "STATE_UNSPECIFIED"),
            "cron": d.get("cron"), "pipeline": job.get("pipeline_spec", {}).get("pipelineInfo", {}).get("name"),
            "next_run": d.get("next_run_time"), "last_run": d.get("last_scheduled_run_response", {}).get(
                "scheduled_run_time"), "started_runs": int(d.get("started_run_count", 0)),
            "max_concurrent": int(d.get("max_concurrent_run_count", 0))}


def schedules_of(resources, pipeline_name: str) -> list[dict]:
    """The schedules (resources as listed) that run pipeline `pipeline_name`, as schedule_summary."""
    return [s for s in map(schedule_summary, resources) if s["pipeline"] == pipeline_name]


def _ids(resources) -> str:
    return ", ".join(f"{schedule_summary(r)['display_name']} ({schedule_summary(r)['id']})" for r in resources)


def find_schedule(resources, key: str):
    """The one schedule named `key`: its display name, its id or its full resource name."""
    hits = [r for r in resources if key in (r.display_name, r.name, r.name.rsplit("/", 1)[-1])]
    if not hits:
        raise CloudError(f"no schedule {key!r} (schedules: {_ids(resources) or 'none'})")
    if len(hits) > 1:
        ids = ", ".join(r.name.rsplit("/", 1)[-1] for r in hits)
        raise CloudError(f"{len(hits)} schedules are named {key!r} ({ids}): give the id")
    return hits[0]


def existing_schedule(resources, display_name: str):
    """The schedule `schedule` updates instead of creating a second one (None: create)."""
    hits = [r for r in resources if r.display_name == display_name]
    if len(hits) > 1:
        raise CloudError(f"{len(hits)} schedules are named {display_name!r} "
                         f"({', '.join(r.name.rsplit('/', 1)[-1] for r in hits)}): delete all but one "
                         "(synthdetect schedule delete ID)")
    return hits[0] if hits else None


def _list_schedule_resources(cfg: PipelineConfig, creds) -> list:
    from google.cloud import aiplatform
    v = cfg.vertex
    assert v is not None
    try:
        return [s.gca_resource for s in aiplatform.PipelineJobSchedule.list(
            project=v.project, location=v.region, credentials=creds)]
    except Exception as e:  # noqa: BLE001 - API errors become one line
        raise CloudError(f"listing Vertex AI schedules failed: {_first_line(e)}") from None


def schedule(cfg: PipelineConfig, spec: str, cron: str | None = None, max_concurrent: int | None = None,
             dry_run: bool = False, params: tuple[str, ...] = (), time_zone: str | None = None) -> dict:
    """Creates a PipelineJobSchedule (projects.locations.schedules.create) that runs the compiled spec,
    or updates the schedule with the same display name (schedules.patch): never a second one."""
    from google.cloud import aiplatform

    if cfg.vertex is None:
        raise CloudError("the config has no vertex: section (see configs/vertex.yaml)")
    v = cfg.vertex
    s = v.schedule
    cron = schedule_cron(cron, time_zone, s)
    if max_concurrent is not None and max_concurrent < 1:
        raise CloudError("--max-concurrent must be >= 1")
    compiled = _check_spec(spec, cfg)
    values = parse_parameters(params, compiled, cfg)
    creds = _credentials(dry_run)
    job = _pipeline_job(cfg, spec, creds, parameter_values=values)
    display_name = s.display_name or f"{cfg.pipeline_name}-schedule"
    sched = aiplatform.PipelineJobSchedule(
        pipeline_job=job, display_name=display_name, credentials=creds, project=v.project, location=v.region)
    kwargs: dict[str, Any] = dict(cron=cron, max_concurrent_run_count=max_concurrent or s.max_concurrent_runs,
                  max_run_count=s.max_runs, service_account=v.service_account, network=v.network)
    client = None if dry_run else sched.api_client
    # PipelineJobSchedule._create builds the Schedule exactly as create() does, then hands it to the
    # client: the recorder keeps it, and it is sent below (create or update)
    recorder = _Recorder()
    sched.api_client = recorder  # type: ignore[assignment]  # a duck-typed stand-in for the client
    import logging
    logging.disable(logging.WARNING)  # the SDK would log "created" and a console link (to stdout)
    try:
        sched._create(**kwargs)  # noqa: SLF001 - dry run: the SDK builds the request, a recorder takes it
    finally:
        logging.disable(logging.NOTSET)
    if dry_run:
        return {"method": "google.cloud.aiplatform.v1.ScheduleService.CreateSchedule",
                "spec": str(Path(spec).resolve()), "config_parameters": config_parameters(cfg),
                "parameters": job_parameters(compiled, values),
                "if_exists": {"display_name": display_name,
                              "method": "google.cloud.aiplatform.v1.ScheduleService.UpdateSchedule",
                              "update_mask": list(SCHEDULE_UPDATE_MASK)},
                "request": {"parent": recorder.parent, "schedule": recorder.schedule}}
    assert client is not None   # not a dry run
    existing = existing_schedule(_list_schedule_resources(cfg, creds), display_name)
    built = recorder.message
    try:
        if existing is None:
            created = client.create_schedule(parent=recorder.parent, schedule=built)
            return {"name": created.name, "cron": cron, "action": "created"}
        from google.protobuf import field_mask_pb2
        built.name = existing.name
        client.update_schedule(schedule=built, update_mask=field_mask_pb2.FieldMask(paths=list(SCHEDULE_UPDATE_MASK)))
        return {"name": existing.name, "cron": cron, "action": "updated"}
    except Exception as e:  # noqa: BLE001 - API errors become one line
        verb = "creating" if existing is None else "updating"
        raise CloudError(f"{verb} the Vertex AI schedule failed: {_first_line(e)}") from None


def list_schedules(cfg: PipelineConfig) -> list[dict]:
    """This pipeline's schedules on Vertex AI (schedule_summary each)."""
    return schedules_of(_list_schedule_resources(cfg, _credentials(False)), cfg.pipeline_name)


def change_schedule(cfg: PipelineConfig, key: str, action: str) -> dict:
    """pause | resume | delete the schedule `key` (display name, id or resource name) of this pipeline."""
    from google.cloud import aiplatform
    v = cfg.vertex
    assert v is not None and action in ("pause", "resume", "delete")
    creds = _credentials(False)
    mine = [r for r in _list_schedule_resources(cfg, creds) if schedule_summary(r)["pipeline"] == cfg.pipeline_name]
    target = find_schedule(mine, key)
    try:
        sched = aiplatform.PipelineJobSchedule.get(target.name, project=v.project, location=v.region,
                                                    credentials=creds)
        getattr(sched, action)()
    except Exception as e:  # noqa: BLE001 - API errors become one line
        raise CloudError(f"{action} {target.name} failed: {_first_line(e)}") from None
    return schedule_summary(target)


class _Recorder:
    """Stands in for the ScheduleService client while the SDK builds the Schedule: records the
    request, sends nothing."""

    def create_schedule(self, parent, schedule, timeout=None):
        self.parent, self.schedule, self.message = parent, _request_dict(schedule), schedule
        created = type(schedule)()
        created._pb.CopyFrom(schedule._pb)  # noqa: SLF001 - proto-plus: the wrapped protobuf message
        created.name = f"{parent}/schedules/dry-run"   # the SDK logs the new schedule's console link
        return created


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


# ------------------------------------------------------------------------------- jobs on Vertex AI
SUCCEEDED, FAILED, CANCELLED = "PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED"
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)


def job_outputs(detail: dict):
    """A job's outputs as `pipeline.artifacts.RunOutputs`: each task's output artifacts' metadata (their
    custom properties) under "<task>.<output key>" (the task names are the component ids); no URIs,
    so nothing is read from the artifacts' files."""
    from pipeline.artifacts import RunOutputs, output_name
    properties = {}
    for task in detail.get("job_detail", {}).get("task_details", []):
        for key, out in (task.get("outputs") or {}).items():
            arts = (out or {}).get("artifacts") or []
            if task.get("task_name") and arts:
                properties[output_name(task["task_name"], key)] = arts[0].get("metadata", {})
    return RunOutputs(detail.get("name") or "", {}, properties)


def job_summary(resource) -> dict:
    """A Vertex AI PipelineJob resource (google.cloud.aiplatform_v1 PipelineJob, as the SDK returns it)
    -> {name, display_name, state, start, end, tasks: {task: state}, blessed, pushed_version,
    pushed_to, error}. The decision is `RunOutputs.verdict()` of the steps' output artifacts (their
    custom properties are the artifacts' metadata on Vertex), as for a local run."""
    from google.protobuf import json_format
    d = json_format.MessageToDict(getattr(resource, "_pb", resource), preserving_proto_field_name=True)
    tasks = {t["task_name"]: t.get("state", "STATE_UNSPECIFIED")
             for t in d.get("job_detail", {}).get("task_details", []) if t.get("task_name")
             and t["task_name"] != d.get("pipeline_spec", {}).get("pipelineInfo", {}).get("name")}
    verdict = job_outputs(d).verdict(figures=False)
    return {"name": d.get("name"), "display_name": d.get("display_name"), "state": d.get("state"),
            "start": d.get("start_time") or d.get("create_time"), "end": d.get("end_time"), "tasks": tasks,
            "blessed": verdict.blessed, "pushed_version": verdict.pushed_version, "pushed_to": verdict.pushed_to,
            "duplicate_of": verdict.duplicate_of,
            "parameters": {k: next(iter(v.values())) if isinstance(v, dict) else v for k, v in
                           (d.get("runtime_config", {}).get("parameter_values")
                            or d.get("runtime_config", {}).get("parameters") or {}).items()},
            "error": (d.get("error") or {}).get("message")}


def wait_for_job(fetch, on_task, sleep, poll: float = 30.0) -> dict:
    """Polls `fetch()` (the job's current resource) until the job ends; `on_task(task, state)` on
    every task state change. Returns the last job_summary."""
    seen: dict[str, str] = {}
    while True:
        s = job_summary(fetch())
        for task, state in s["tasks"].items():
            if seen.get(task) != state:
                seen[task] = state
                on_task(task, state)
        if s["state"] in TERMINAL:
            return s
        sleep(poll)


def list_jobs(cfg: PipelineConfig, limit: int = 50) -> list[dict]:
    """This pipeline's jobs on Vertex AI (newest first) through the SDK (Application Default Credentials)."""
    from google.cloud import aiplatform
    v = cfg.vertex
    assert v is not None
    creds = _credentials(False)
    try:
        jobs = aiplatform.PipelineJob.list(filter=f'pipeline_name="{cfg.pipeline_name}"', order_by="create_time desc",
                                           project=v.project, location=v.region, credentials=creds)
    except Exception as e:  # noqa: BLE001 - API errors become one line
        raise CloudError(f"listing Vertex AI pipeline jobs failed: {_first_line(e)}") from None
    return [job_summary(j.gca_resource) for j in jobs[:limit]]


def get_job(cfg: PipelineConfig, name: str) -> dict:
    """One job (its id or full resource name; "latest": the newest) as job_summary."""
    from google.cloud import aiplatform
    v = cfg.vertex
    assert v is not None
    if name == "latest":
        jobs = list_jobs(cfg, limit=1)
        if not jobs:
            raise CloudError(f"no Vertex AI pipeline jobs of {cfg.pipeline_name!r} in {v.project}/{v.region}")
        return jobs[0]
    creds = _credentials(False)
    try:
        job = aiplatform.PipelineJob.get(name, project=v.project, location=v.region, credentials=creds)
    except Exception as e:  # noqa: BLE001 - API errors become one line
        raise CloudError(f"pipeline job {name!r}: {_first_line(e)}") from None
    return job_summary(job.gca_resource)
