"""`synthdetect run`: the whole pipeline here (LocalDagRunner), with a progress line per component
and the run report at the end."""
from __future__ import annotations

import time

import click

from pipeline.cli.common import (EXIT_NOT_BLESSED, UserError, allow_unblessed_option, config_option, exit_with_decision,
                                 feedback_lines, load, progress_console, set_option, short, user_errors)
from pipeline.cli.report import print_report

RUNNERS = ("local", "vertex")


def _vertex_hint(config: str) -> UserError:
    return UserError(f"the vertex runner does not run from here: synthdetect compile --config {config} "
                     f"--out pipeline.json && synthdetect submit --config {config} --spec pipeline.json")


@click.command()
@config_option
@set_option
@click.option("--runner", type=click.Choice(RUNNERS), default=None,
              help="where to run (default: the config's runner, local in configs/local.yaml); vertex is not "
                   "run from this command: it prints the compile + submit commands that run it on Vertex AI")
@click.option("--json", "as_json", is_flag=True, help="print the run report as JSON")
@allow_unblessed_option
def run(config: str, sets: tuple[str, ...], runner: str | None, as_json: bool, allow_unblessed: bool) -> None:
    """Run the whole pipeline (ingest -> validate -> transform -> train x2 -> evaluate -> push).

    Exits 0 only when the model was blessed and pushed; {not_blessed} when the release gate refused it
    (the report, and its --json, still say why); 1 when the run failed."""
    if runner == "vertex":
        raise _vertex_hint(config)
    if runner == "local":
        sets = tuple(sets) + ("runner=local",)
    cfg = load(config, sets)  # before importing TensorFlow: config mistakes fail in a fraction of a second
    if cfg.runner == "vertex":
        raise _vertex_hint(config)
    from components.ingest.listing import InputError, listing_session
    from pipeline.runner import LocationError, check_inputs, check_weights

    # one listing of the input for the preflight, the ExampleGen fingerprint and ingestion; locations
    # and inputs are checked before TensorFlow and TFX are imported (a mistake answers in a second)
    click.get_current_context().with_resource(listing_session())
    try:
        listing = check_inputs(cfg)
    except (InputError, LocationError) as e:
        raise UserError(str(e)) from None
    from components.trainer.model import WeightsError
    from pipeline import process_record
    from pipeline.pipeline import create_components
    from pipeline.report import run_report
    from pipeline.runner import PipelineFailed, new_run_id, run_local
    try:
        check_weights(cfg)
    except WeightsError as e:
        raise UserError(str(e)) from None
    n_inputs = listing.n_inputs
    if listing.feedback:
        feedback_lines(listing.feedback)
    _remove_partial_outputs(cfg)
    run_id = new_run_id()
    log_path = process_record.log_path(cfg.metadata_path, run_id)
    n_components = len(create_components(cfg))
    progress_console.print(f"run [bold]{run_id}[/]: {n_inputs} input files from {cfg.data.input}; "
                           f"{n_components} components; log: {log_path}")
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    started: dict[str, float] = {}
    cached: set[str] = set()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=progress_console, transient=False) as progress:
        task = progress.add_task("starting", total=n_components)

        def on_event(node: str, state: str, detail: str | None = None) -> None:
            if state == "epoch":           # a Trainer's line per epoch
                progress.console.print(f"  {detail}", soft_wrap=True)
                return
            if state == "cached":          # finished next, without running: say so, not "done (0s)"
                cached.add(node)
                return
            if state == "running":
                started[node] = time.time()
                progress.update(task, description=f"running {node}")
            elif node in cached:
                progress.console.print(f"  cached {node} (outputs of an earlier run reused)")
                progress.advance(task)
            else:
                progress.console.print(f"  done {node} ({time.time() - started.get(node, time.time()):.0f}s)")
                progress.advance(task)
        t0 = time.time()
        try:
            run_local(cfg, log_path, run_id=run_id, on_event=on_event)
        except PipelineFailed as e:
            progress.stop()
            raise UserError(str(e)) from None   # exit 1: the run failed
        progress.update(task, description=f"finished in {time.time() - t0:.0f}s")
    from pipeline.artifacts import OutputUnreadable
    with user_errors(OutputUnreadable):
        report = run_report(cfg.metadata_path, cfg.pipeline_name, cfg.pipeline_root, run_id)
    if as_json:
        click.echo(report.to_json())
    else:
        print_report(report)
    exit_with_decision(report.blessed, report.pushed_to, allow_unblessed, report.duplicate_of)


run.help = (run.help or "").format(not_blessed=EXIT_NOT_BLESSED)


def _remove_partial_outputs(cfg) -> None:
    """Output folders that interrupted or failed runs left behind (no reader uses them: they are not
    in ML Metadata) are removed before the next run."""
    from pipeline.runs import remove_partial_outputs
    try:
        removed = remove_partial_outputs(cfg.metadata_path, cfg.pipeline_name, cfg.pipeline_root)
    except Exception as e:  # noqa: BLE001 - housekeeping must not stop a run; say why it was skipped
        progress_console.print(f"warning: partial outputs of earlier runs not checked ({type(e).__name__}: {e})")
        return
    if removed:
        progress_console.print(f"removed {len(removed)} partial output folders of interrupted or failed runs "
                               f"(e.g. {short(removed[0])})")
