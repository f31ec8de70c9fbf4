"""`synthdetect compile | submit | schedule` (Google Cloud: Vertex AI Pipelines, Dataflow, Vertex AI
training) and `synthdetect runs [show RUN]` (local runs from ML Metadata). Attaches to `main`.

Cloud commands read configs/vertex.yaml by default and never need credentials with --dry-run;
without --dry-run they use Application Default Credentials and fail with one `error:` line when
there are none.
"""
from __future__ import annotations

import json
import os

import click

from pipeline.cli import UserError, _load, config_option, console, main, set_option

VERTEX_CONFIG = "configs/vertex.yaml"
vertex_config_option = click.option("--config", "-c", default=VERTEX_CONFIG, show_default=True,
                                    help="pipeline config with a vertex: section (YAML)")
spec_option = click.option("--spec", default="pipeline.json", show_default=True,
                           help="compiled pipeline (synthdetect compile --out …)")
dry_run_option = click.option("--dry-run", is_flag=True,
                              help="print the exact API request as JSON instead of sending it (no credentials needed)")


def _vertex_cfg(config: str, sets: tuple[str, ...]):
    return _load(config, tuple(sets) + ("runner=vertex",))


def _cloud(fn, *args, **kwargs):
    from pipeline.vertex import CloudError
    try:
        return fn(*args, **kwargs)
    except CloudError as e:
        raise UserError(str(e)) from None


def _quiet_libraries() -> None:
    """TFX/absl/aiplatform log INFO/WARNING lines while compiling and building requests: keep
    stdout/stderr to our own output (stdout stays parseable JSON for --dry-run)."""
    import logging

    from pipeline.logs import route_library_logs
    route_library_logs([], logging.ERROR)
    logging.getLogger("google.cloud.aiplatform").setLevel(logging.ERROR)


@main.command("compile")
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


@main.command()
@vertex_config_option
@set_option
@spec_option
@dry_run_option
@click.option("--job-id", default=None, help="pipeline job id (default: <pipeline>-<timestamp>)")
def submit(config: str, sets: tuple[str, ...], spec: str, dry_run: bool, job_id: str | None) -> None:
    """Run the compiled pipeline once on Vertex AI Pipelines (aiplatform PipelineJob)."""
    cfg = _vertex_cfg(config, sets)
    _quiet_libraries()
    from pipeline import vertex
    _quiet_libraries()
    result = _cloud(vertex.submit, cfg, spec, dry_run=dry_run, job_id=job_id)
    if dry_run:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        console.print(f"submitted {result['name']}\n  {result['console']}")


@main.command()
@vertex_config_option
@set_option
@spec_option
@dry_run_option
@click.option("--cron", default=None, help="5-field cron, e.g. \"0 3 * * 1\" (default: vertex.schedule.cron)")
@click.option("--max-concurrent", type=int, default=None,
              help="max runs at once (default: vertex.schedule.max_concurrent_runs)")
def schedule(config: str, sets: tuple[str, ...], spec: str, dry_run: bool, cron: str | None,
             max_concurrent: int | None) -> None:
    """Run the compiled pipeline on a schedule (Vertex AI PipelineJobSchedule)."""
    cfg = _vertex_cfg(config, sets)
    _quiet_libraries()
    from pipeline import vertex
    _quiet_libraries()
    result = _cloud(vertex.schedule, cfg, spec, cron=cron, max_concurrent=max_concurrent, dry_run=dry_run)
    if dry_run:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        console.print(f"scheduled {result['name']} ({result['cron']})")


# ------------------------------------------------------------------------------------------- runs
@main.group(invoke_without_command=True)
@config_option
@set_option
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
def runs(ctx: click.Context, config: str, sets: tuple[str, ...], as_json: bool) -> None:
    """List local pipeline runs from ML Metadata (`runs show RUN` for one run's lineage)."""
    ctx.obj = {"config": config, "sets": sets, "as_json": as_json}
    if ctx.invoked_subcommand is not None:
        return
    cfg = _load(config, sets)
    from pipeline.runs import list_runs, to_json
    try:
        summaries = list_runs(cfg.metadata_path, cfg.pipeline_name, cfg.pipeline_root)
    except FileNotFoundError as e:
        raise UserError(str(e).strip("'\"")) from None
    if as_json:
        click.echo(to_json(summaries))
        return
    if not summaries:
        console.print(f"no runs of {cfg.pipeline_name!r} in {cfg.metadata_path}")
        return
    # one line per run (greppable; no table folding on narrow terminals), then what did not finish
    click.echo(f"runs of {cfg.pipeline_name} in {cfg.metadata_path} (newest first)")
    for s in summaries:
        states = list(s.components.values())
        done = sum(st in ("complete", "cached") for st in states)
        end = (s.end or "…")
        if s.start and s.end and s.start[:10] == s.end[:10]:
            end = s.end[11:]
        click.echo(f"{s.run_id}  {s.start or '?'} -> {end}  {s.status:<10}  {done}/{len(states)} components  "
                   f"data {(s.data_fingerprint or 'sha256:?')[:19]}  {_blessed_word(s.blessed)}  "
                   f"{'pushed ' + s.pushed_version if s.pushed_version else 'not pushed'}")
        other = [f"{n}: {st}" for n, st in s.components.items() if st not in ("complete", "cached")]
        if s.status == "interrupted" and s.process:
            other.insert(0, f"process {s.process['pid']} on {s.process['host']} is gone")
        if other:
            click.echo("    " + "; ".join(other))


def _blessed_word(blessed: bool | None) -> str:
    return "not evaluated" if blessed is None else ("blessed" if blessed else "not blessed")


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
def runs_show(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Lineage of one run: ingest summary, models, evaluation, blessing, registry version."""
    o = ctx.obj
    cfg = _load(o["config"], o["sets"])
    from pipeline.runs import run_lineage, to_json
    try:
        lin = run_lineage(cfg.metadata_path, cfg.pipeline_name, cfg.pipeline_root, run_id)
    except (FileNotFoundError, LookupError) as e:
        raise UserError(str(e).strip("'\"")) from None
    if as_json or o["as_json"]:
        click.echo(to_json(lin))
        return
    d, ev, reg = lin["data"], lin["evaluation"], lin["registry"]
    click.echo(f"run {lin['run_id']}: {lin['status']} ({lin['start']} -> {lin['end'] or '…'})")
    p = lin.get("process")
    if p:
        click.echo(f"process:    {p['pid']} on {p['host']}: {p['state']}"
                   + (f", {p['outcome']} at {p['ended_at']}" if p.get("outcome") else ""))
    click.echo(f"data:       {d['examples']}")
    click.echo(f"  ingest summary {d['ingest_summary']} ({d['fingerprint']})")
    if d["ingest"]:
        i = d["ingest"]
        click.echo(f"  {i.get('inputs')} inputs -> {i.get('written')} written, {i.get('quarantined')} quarantined")
    for m in lin["models"]:
        click.echo(f"model:      {m['component']}: {m['uri']}")
    for a in ev["artifacts"]:
        click.echo(f"evaluation: {a['component']}: {a['uri']}")
    for model, values in ev["metrics"].items():
        click.echo(f"  {model}: " + ", ".join(f"{k}={v:.3f}" for k, v in sorted(values.items())
                                                 if k != "example_count"))
    for b in ev["blessings"]:
        click.echo(f"blessing:   {b['component']}: {'BLESSED' if b['blessed'] else 'not blessed'} ({b['uri']})")
    for r in ev["reasons"]:
        click.echo(f"  {r}")
    click.echo(f"registry:   version {reg['version']} at {reg['destination']}" if reg["pushed"]
                else "registry:   not pushed")
    click.echo("steps:")
    for s in lin["steps"]:
        click.echo(f"  {s['component']} ({s['state']}) <- {', '.join(s['inputs']) or '(sources)'}")


# ------------------------------------------------------------------------------- run --runner
def _add_runner_option() -> None:
    """`synthdetect run --runner local|vertex`: local (the default) runs here; vertex points to
    compile/submit, which is how a pipeline gets onto Vertex AI Pipelines."""
    run_cmd = main.commands.get("run")
    if run_cmd is None or any(p.name == "runner" for p in run_cmd.params):
        return
    run_cmd.params.append(click.Option(
        ["--runner"], type=click.Choice(["local", "vertex"]), default=None,
        help="where to run (default: the config's runner, local in configs/local.yaml)"))
    original = run_cmd.callback

    def callback(runner: str | None = None, **kwargs):
        config, sets = kwargs.get("config"), tuple(kwargs.get("sets") or ())
        if runner == "local":
            sets = sets + ("runner=local",)
            kwargs["sets"] = sets
        effective = runner or _load(config, sets).runner
        if effective == "vertex":
            raise UserError(f"the vertex runner does not run from here: synthdetect compile --config {config} "
                            f"--out pipeline.json && synthdetect submit --config {config} --spec pipeline.json")
        return original(**kwargs)

    run_cmd.callback = callback


_add_runner_option()
