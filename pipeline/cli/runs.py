"""`synthdetect runs [show RUN]`: the local runs in ML Metadata, and one run's lineage; with a vertex
config, the pipeline jobs on Vertex AI (through the SDK)."""
from __future__ import annotations

import json

import click

from pipeline.cli.common import UserError, config_option, console, json_option, load, set_option, user_errors


@click.group(invoke_without_command=True)
@config_option
@set_option
@json_option
@click.pass_context
def runs(ctx: click.Context, config: str, sets: tuple[str, ...], as_json: bool) -> None:
    """List pipeline runs: local ones from ML Metadata, or Vertex AI pipeline jobs when the config's
    runner is vertex (`runs show RUN` for one run's lineage / one job's tasks)."""
    ctx.obj = {"config": config, "sets": sets, "as_json": as_json}
    if ctx.invoked_subcommand is not None:
        return
    cfg = load(config, sets)
    if cfg.runner == "vertex":
        return _vertex_runs(cfg, as_json)
    from pipeline.runs import list_runs
    with user_errors(FileNotFoundError):
        summaries = list_runs(cfg.metadata_path, cfg.pipeline_name, cfg.pipeline_root)
    unreadable = [s for s in summaries if (s.process or {}).get("state") == "unreadable"]
    _list_local(cfg, summaries, as_json)
    if unreadable:   # every run is listed first; one unreadable record is not a success either
        more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
        error = (unreadable[0].process or {})["error"]
        raise UserError(f"run {unreadable[0].run_id}: unreadable process record {error}{more}")


def _list_local(cfg, summaries, as_json: bool) -> None:
    from pipeline.runs import to_json
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
        if states and all(st == "not run" for st in states):
            other = ["no component started"]
        if s.status == "interrupted" and s.process:
            other.insert(0, f"process {s.process['pid']} on {s.process['host']} is gone")
        if s.process and s.process.get("state") == "unreadable":
            other.insert(0, f"process record unreadable: {s.process['error']}")
        if other:
            click.echo("    " + "; ".join(other))


def vertex_job_line(job: dict) -> str:
    """One line per Vertex AI pipeline job (as `runs` prints local runs)."""
    state = (job["state"] or "?").removeprefix("PIPELINE_STATE_").lower()
    done = sum(s in ("SUCCEEDED", "SKIPPED") for s in job["tasks"].values())
    return (f"{(job['name'] or '?').rsplit('/', 1)[-1]}  {job['start'] or '?'} -> {job['end'] or '…'}  {state:<10}  "
            f"{done}/{len(job['tasks'])} tasks  {_blessed_word(job['blessed'])}  "
            f"{'pushed ' + job['pushed_version'] if job['pushed_version'] else 'not pushed'}")


def _vertex_runs(cfg, as_json: bool) -> None:
    from pipeline import vertex
    with user_errors(vertex.CloudError):
        jobs = vertex.list_jobs(cfg)
    if as_json:
        click.echo(json.dumps(jobs, indent=2, sort_keys=True))
        return
    v = cfg.vertex
    if not jobs:
        console.print(f"no Vertex AI pipeline jobs of {cfg.pipeline_name!r} in {v.project}/{v.region}")
        return
    click.echo(f"Vertex AI pipeline jobs of {cfg.pipeline_name} in {v.project}/{v.region} (newest first)")
    for job in jobs:
        click.echo(vertex_job_line(job))


def _blessed_word(blessed: bool | None) -> str:
    return "not evaluated" if blessed is None else ("blessed" if blessed else "not blessed")


@runs.command("show")
@click.argument("run_id", default="latest", metavar="[RUN|latest]")
# also after `show` (`runs show latest --config X`): these take precedence over the ones given to `runs`
@click.option("--config", "-c", "show_config", default=None, help="pipeline config (YAML); as `runs --config`")
@click.option("--set", "show_sets", multiple=True, metavar="KEY=VALUE", help="as `runs --set` (repeatable)")
@json_option
@click.pass_context
def runs_show(ctx: click.Context, run_id: str, show_config: str | None, show_sets: tuple[str, ...],
              as_json: bool) -> None:
    """Lineage of one run (default: the latest): ingest summary, models, evaluation, blessing, registry version."""
    o = ctx.obj
    cfg = load(show_config or o["config"], (*o["sets"], *show_sets))
    if cfg.runner == "vertex":
        from pipeline import vertex
        with user_errors(vertex.CloudError):
            job = vertex.get_job(cfg, run_id)
        if as_json or o["as_json"]:
            click.echo(json.dumps(job, indent=2, sort_keys=True))
        else:
            click.echo(vertex_job_line(job))
            for task, state in job["tasks"].items():
                click.echo(f"  {task}: {state.lower()}")
            if job["error"]:
                click.echo(f"  error: {job['error']}")
        return
    from pipeline.runs import run_lineage, to_json
    with user_errors(FileNotFoundError, LookupError):
        lin = run_lineage(cfg.metadata_path, cfg.pipeline_name, cfg.pipeline_root, run_id)
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
    pm = lin.get("production_model")
    if pm and pm["found"]:
        click.echo(f"production: {pm['version']} (copied for the comparison to {pm['uri']})")
    for a in ev["artifacts"]:
        click.echo(f"evaluation: {a['component']}: {a['uri']}")
    for model, values in ev["metrics"].items():
        click.echo(f"  {model}: " + ", ".join(f"{k}={v:.3f}" for k, v in sorted(values.items())
                                                 if k != "example_count"))
    for b in ev["blessings"]:
        state = "not compared (no production model)" if b.get("compared") is False else \
            "BLESSED" if b["blessed"] else "not blessed"
        click.echo(f"blessing:   {b['component']}: {state} ({b['uri']})")
    for r in ev["reasons"]:
        click.echo(f"  {r}")
    from pipeline.report import production_line
    click.echo(production_line(ev.get("production")))
    click.echo(f"registry:   version {reg['version']} at {reg['destination']}" if reg["pushed"]
               else "registry:   not pushed")
    click.echo("steps:")
    for s in lin["steps"]:
        click.echo(f"  {s['component']} ({s['state']}) <- {', '.join(s['inputs']) or '(sources)'}")
