"""`synthdetect compile | submit | schedule`: the pipeline on Google Cloud (Vertex AI Pipelines,
Dataflow, Vertex AI training).

These commands read configs/vertex.yaml by default and never need credentials with --dry-run;
without --dry-run they use Application Default Credentials and fail with one `error:` line when
there are none.
"""
from __future__ import annotations

import json

import click

from pipeline.cli.common import (UserError, allow_unblessed_option, console, exit_with_decision, json_option, load,
                                 progress_console, set_option, user_errors, vertex_config_option)

spec_option = click.option("--spec", default="pipeline.json", show_default=True,
                           help="compiled pipeline (synthdetect compile --out …)")
param_option = click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
                             help="a runtime parameter of the compiled pipeline, e.g. --param epochs=1 (repeatable; "
                                  "data_input, epochs, batch_size, learning_rate, image_size, every threshold)")
dry_run_option = click.option("--dry-run", is_flag=True,
                              help="print the exact API request as JSON instead of sending it (no credentials needed)")


def job_options(fn):
    """The options `submit` and `schedule` share: --config, --set, --spec, --dry-run, --param."""
    for option in reversed((vertex_config_option, set_option, spec_option, dry_run_option, param_option)):
        fn = option(fn)
    return fn


def _vertex_cfg(config: str, sets: tuple[str, ...]):
    return load(config, tuple(sets) + ("runner=vertex",))


def _cloud(fn, *args, **kwargs):
    from pipeline.vertex import CloudError
    with user_errors(CloudError):
        return fn(*args, **kwargs)


def _quiet_libraries() -> None:
    """TFX/absl/aiplatform log INFO/WARNING lines while compiling and building requests: keep
    stdout/stderr to our own output (stdout stays parseable JSON for --dry-run)."""
    import logging

    from pipeline.logs import route_library_logs
    route_library_logs([], logging.ERROR)
    logging.getLogger("google.cloud.aiplatform").setLevel(logging.ERROR)


@click.command("compile")
@vertex_config_option
@set_option
@click.option("--runner", type=click.Choice(["vertex"]), default="vertex", show_default=True,
              help="orchestrator to compile for (local runs need no compiling: synthdetect run)")
@click.option("--out", "-o", default="pipeline.json", show_default=True, help="pipeline job spec to write (JSON)")
def compile_cmd(config: str, sets: tuple[str, ...], runner: str, out: str) -> None:
    """Compile the pipeline into a Vertex AI Pipelines job spec (KubeflowV2DagRunner)."""
    cfg = _vertex_cfg(config, sets)
    _quiet_libraries()
    from pipeline.vertex import compile_pipeline
    _quiet_libraries()
    job = _cloud(compile_pipeline, cfg, out)
    v = cfg.vertex
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    t = v.training
    acc = f" + {t.accelerator_count}x {t.accelerator_type}" if t.accelerator_type else ""
    beam = "Dataflow" if v.dataflow.enabled else "Beam DirectRunner in the component containers"
    console.print(f"compiled {cfg.pipeline_name} for Vertex AI Pipelines: {len(tasks)} components -> {out}")
    console.print(f"  components: {v.images.cpu}")
    console.print(f"  trainers:   Vertex AI custom jobs on {t.machine_type}{acc}, image {v.trainer_image()}")
    console.print(f"  Beam steps: {beam}; pipeline root {v.pipeline_root}")


@click.command()
@job_options
@click.option("--job-id", default=None, help="pipeline job id (default: <pipeline>-<timestamp>)")
@click.option("--wait", is_flag=True, help="poll the job until it ends, print each task's state, and exit like "
                                           "`synthdetect run` (0 blessed and pushed, 3 refused, 1 failed)")
@click.option("--poll", type=click.FloatRange(1, 3600), default=30, show_default=True, help="seconds between polls")
@allow_unblessed_option
@click.option("--json", "as_json", is_flag=True,
              help="print the submitted job (name, console link; with --wait its end state and release decision) "
                   "as JSON on stdout; the exit code is the same")
def submit(config: str, sets: tuple[str, ...], spec: str, dry_run: bool, params: tuple[str, ...],
           job_id: str | None, wait: bool, poll: float, allow_unblessed: bool, as_json: bool) -> None:
    """Run the compiled pipeline once on Vertex AI Pipelines (aiplatform PipelineJob)."""
    cfg = _vertex_cfg(config, sets)
    _quiet_libraries()     # before the import (it logs) and after it (it resets the levels)
    from pipeline import vertex
    _quiet_libraries()

    def on_task(task: str, state: str) -> None:
        progress_console.print(f"  {task}: {state.lower()}")
    result = _cloud(vertex.submit, cfg, spec, dry_run=dry_run, job_id=job_id, params=params,
                    wait=wait and not dry_run, on_task=on_task, poll=poll)
    if dry_run:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:
        console.print(f"submitted {result['name']}\n  {result['console']}")
    if wait:
        finish_job(result["job"], allow_unblessed, quiet=as_json)


def finish_job(job: dict, allow_unblessed: bool, quiet: bool = False) -> None:
    """`submit --wait`'s end: the job's state and release decision as the exit code of a local run
    (`quiet`: the JSON on stdout said it; only the exit code and errors follow)."""
    from pipeline.vertex import SUCCEEDED
    state = (job["state"] or "").removeprefix("PIPELINE_STATE_").lower()
    if job["state"] != SUCCEEDED:
        raise UserError(f"pipeline job {job['name']} {state}" + (f": {job['error']}" if job.get("error") else ""))
    (progress_console if quiet else console).print(f"pipeline job {job['name']} succeeded: "
                  + ("not evaluated" if job["blessed"] is None else "BLESSED" if job["blessed"] else "NOT BLESSED")
                  + (f", pushed {job['pushed_version']} ({job['pushed_to']})" if job["pushed_version"]
                     else f", not pushed: {job['duplicate_of']} in the registry is the same model"
                     if job.get("duplicate_of") else ", not pushed"))
    # a blessed model the registry already holds (an identical rerun) ends as a local run does: exit 0
    exit_with_decision(job["blessed"], job["pushed_version"], allow_unblessed, job.get("duplicate_of"))


@click.group(invoke_without_command=True)
@job_options
@click.option("--cron", default=None,
              help="5-field cron, e.g. \"0 3 * * 1\"; a TZ=ZONE / CRON_TZ=ZONE prefix sets its time zone, e.g. "
                   "\"TZ=Europe/Berlin 0 3 * * 1\" (default: vertex.schedule.cron)")
@click.option("--time-zone", default=None, help="IANA time zone of --cron, e.g. Europe/Berlin "
                                                "(default: vertex.schedule.time_zone)")
@click.option("--max-concurrent", type=int, default=None,
              help="max runs at once (default: vertex.schedule.max_concurrent_runs)")
@click.option("--json", "as_json", is_flag=True, help="print the result ({name, cron, action: created|updated}) "
                                                      "as JSON on stdout")
@click.pass_context
def schedule(ctx: click.Context, config: str, sets: tuple[str, ...], spec: str, dry_run: bool,
             params: tuple[str, ...], cron: str | None, time_zone: str | None, max_concurrent: int | None,
             as_json: bool) -> None:
    """Run the compiled pipeline on a schedule (Vertex AI PipelineJobSchedule): creates it, or updates
    the schedule with the same display name (vertex.schedule.display_name). `schedule list`,
    `schedule pause|resume|delete NAME` manage them."""
    if ctx.invoked_subcommand is not None:
        return
    cfg = _vertex_cfg(config, sets)
    from schemas.config import check_time_zone, split_cron_tz
    try:   # checked before the Vertex SDK is imported: a typo answers at once
        if cron is not None:
            split_cron_tz(cron)
        if time_zone is not None:
            check_time_zone(time_zone)
    except ValueError as e:
        raise UserError(str(e)) from None
    from pipeline import vertex
    _quiet_libraries()
    result = _cloud(vertex.schedule, cfg, spec, cron=cron, max_concurrent=max_concurrent, dry_run=dry_run,
                    params=params, time_zone=time_zone)
    if dry_run or as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        console.print(f"{result['action']} schedule {result['name']} ({result['cron']})")


@schedule.command("list")
@vertex_config_option
@set_option
@json_option
def schedule_list(config: str, sets: tuple[str, ...], as_json: bool) -> None:
    """This pipeline's schedules on Vertex AI: id, display name, state, cron, next run, runs started."""
    cfg = _vertex_cfg(config, sets)
    from pipeline import vertex
    _quiet_libraries()
    found = _cloud(vertex.list_schedules, cfg)
    if as_json:
        click.echo(json.dumps(found, indent=2, sort_keys=True))
        return
    if not found:
        click.echo(f"no schedules of {cfg.pipeline_name!r} in {cfg.vertex.project}/{cfg.vertex.region}")
        return
    for s in found:
        click.echo(f"{s['id']}  {s['display_name']}  {s['state'].lower()}  {s['cron']}  "
                   f"next {s['next_run'] or '-'}  {s['started_runs']} runs started")


def _change(action: str, done: str):
    @schedule.command(action)
    @click.argument("name")
    @vertex_config_option
    @set_option
    @click.option("--json", "as_json", is_flag=True,
                  help=f"print the {done} schedule (as `schedule list --json` shows one, plus action) as JSON")
    def cmd(name: str, config: str, sets: tuple[str, ...], as_json: bool) -> None:
        cfg = _vertex_cfg(config, sets)
        from pipeline import vertex
        _quiet_libraries()
        s = _cloud(vertex.change_schedule, cfg, name, action)
        if as_json:
            click.echo(json.dumps({**s, "action": done}, indent=2, sort_keys=True))
        else:
            console.print(f"{done} schedule {s['display_name']} ({s['name']})")
    cmd.__doc__ = f"{action.capitalize()} one of this pipeline's schedules (NAME: display name, id or resource name)."
    cmd.help = cmd.__doc__
    return cmd


schedule_pause = _change("pause", "paused")
schedule_resume = _change("resume", "resumed")
schedule_delete = _change("delete", "deleted")
