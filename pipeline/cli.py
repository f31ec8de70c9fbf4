"""`synthdetect` command line. User mistakes end in one `error:` line and a non-zero exit."""
from __future__ import annotations

import logging
import os
import sys
import time
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")  # Beam workers too
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ noise; the run log has the rest
warnings.filterwarnings("ignore", category=FutureWarning)

import click  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

DEFAULT_CONFIG = "configs/local.yaml"
console = Console(highlight=False)          # results
progress_console = Console(stderr=True, highlight=False)  # progress, so stdout stays parseable


class UserError(click.ClickException):
    """Printed as one line: `error: <message>`."""

    def show(self, file=None):
        click.echo(f"error: {self.format_message()}", err=True)


def _parse_sets(sets: tuple[str, ...]) -> dict:
    import yaml
    out: dict = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects KEY=VALUE (e.g. model.epochs=1), got {item!r}")
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {item!r}: {p!r} was already set to a value, not a section")
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise UserError(f"--set {item!r}: the value is not valid YAML ({problem}); quote it to pass a "
                            f"string, e.g. --set '{key}=\"{value}\"'") from None
    return out


def _load(config: str, sets: tuple[str, ...] = ()):
    from schemas.config import ConfigError, load_config
    try:
        return load_config(config, _parse_sets(sets))
    except ConfigError as e:
        raise UserError(str(e)) from None


config_option = click.option("--config", "-c", default=DEFAULT_CONFIG, show_default=True,
                             help="pipeline config (YAML)")
set_option = click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
                          help="override a config value, e.g. --set model.epochs=1 (repeatable)")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="synthdetect")
def main() -> None:
    """synthdetect: a TFX pipeline that tells AI-synthesized images from real photographs."""
    from pipeline.logs import route_library_logs
    route_library_logs([], logging.WARNING)


@main.command()
@config_option
@set_option
@click.option("--json", "as_json", is_flag=True, help="print the run report as JSON")
def run(config: str, sets: tuple[str, ...], as_json: bool) -> None:
    """Run the whole pipeline (ingest -> validate -> transform -> train x2 -> evaluate -> push)."""
    cfg = _load(config, sets)  # before importing TensorFlow: config mistakes fail in a fraction of a second
    from components.ingest.listing import InputError, listing_session
    from components.trainer.model import WeightsError
    from pipeline import process_record
    from pipeline.pipeline import create_components
    from pipeline.report import run_report
    from pipeline.runner import MetadataPathError, PipelineFailed, new_run_id, preflight, run_local

    # one listing of the input for the preflight, the ExampleGen fingerprint and ingestion
    click.get_current_context().with_resource(listing_session())
    try:
        n_inputs = preflight(cfg)
    except (InputError, WeightsError, MetadataPathError) as e:
        raise UserError(str(e)) from None
    _remove_partial_outputs(cfg)
    run_id = new_run_id()
    log_path = process_record.log_path(cfg.metadata_path, run_id)
    n_components = len(create_components(cfg))
    progress_console.print(f"run [bold]{run_id}[/]: {n_inputs} input files from {cfg.data.input}; "
                  f"{n_components} components; log: {log_path}")
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    started: dict[str, float] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=progress_console, transient=False) as progress:
        task = progress.add_task("starting", total=n_components)

        def on_event(node: str, state: str) -> None:
            if state == "running":
                started[node] = time.time()
                progress.update(task, description=f"running {node}")
            else:
                progress.console.print(f"  done {node} ({time.time() - started.get(node, time.time()):.0f}s)")
                progress.advance(task)
        t0 = time.time()
        try:
            run_local(cfg, log_path, run_id=run_id, on_event=on_event)
        except PipelineFailed as e:
            progress.stop()
            raise click.ClickException(str(e)) from None
        progress.update(task, description=f"finished in {time.time() - t0:.0f}s")
    report = run_report(cfg.metadata_path, cfg.pipeline_name, cfg.pipeline_root, run_id)
    if as_json:
        click.echo(report.to_json())
    else:
        print_report(report)


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
                               f"(e.g. {_short(removed[0])})")


@main.command()
@click.argument("run", required=False, default=None)
@config_option
@set_option
@click.option("--run", "run_id", default=None, help="run id (same as the RUN argument; default: the latest run)")
@click.option("--json", "as_json", is_flag=True)
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="also write report.md and PNG figures (paper tables 1-2, figs 2-3, calibration, "
                   "slices, robustness) into this folder")
def report(run: str | None, config: str, sets: tuple[str, ...], run_id: str | None, as_json: bool,
           out_dir: str | None) -> None:
    """Show what run RUN (default: the latest) produced: data, statistics, evaluation, blessing,
    pushed model; with --out, also the Markdown + PNG report."""
    if run and run_id and run != run_id:
        raise UserError(f"two different runs given: {run!r} and --run {run_id!r}")
    run_id = run_id or run
    from pipeline.report import run_report, write_markdown_report
    cfg = _load(config, sets)
    try:
        rep = run_report(cfg.metadata_path, cfg.pipeline_name, cfg.pipeline_root, run_id)
        md = write_markdown_report(rep, out_dir) if out_dir else None
    except (FileNotFoundError, LookupError) as e:
        raise UserError(str(e).strip("'\"")) from None
    click.echo(rep.to_json()) if as_json else print_report(rep)
    if md:
        progress_console.print(f"report: {md}")


@main.command("config")
@config_option
@set_option
def show_config(config: str, sets: tuple[str, ...]) -> None:
    """Validate a config and print it with every default filled in."""
    import yaml
    cfg = _load(config, sets)
    click.echo(yaml.safe_dump(cfg.model_dump(), sort_keys=False))


def _short(path: str) -> str:
    rel = os.path.relpath(path) if not path.startswith("gs://") else path
    return path if rel.startswith("..") else rel


def print_report(rep) -> None:
    labels = {
        "ImageExampleGen.examples": "TFRecords (train/eval splits)",
        "StatisticsGen.statistics": "statistics (TFDV)",
        "ExampleValidator.anomalies": "anomalies vs schemas/schema.pbtxt",
        "Transform.transform_graph": "transform graph",
        "Trainer_vgg16_finetune.model": "model: vgg16_finetune (candidate)",
        "Trainer_baseline.model": "model: baseline (from scratch)",
        "Evaluator.evaluation": "evaluation (TFMA)",
        "Evaluator.blessing": "blessing (TFMA)",
        "ReleaseCheck.check": "release check (calibration, robustness)",
        "ReleaseCheck.blessing": "blessing (final)",
    }
    if rep.status and rep.status != "complete":
        why = {"interrupted": "its process is gone (killed?) before the run finished",
               "running": "still running", "failed": "a component failed",
               "incomplete": "stopped before the pusher"}.get(rep.status, "")
        console.print(f"[yellow]run {rep.run_id}: {rep.status}[/]" + (f" ({why})" if why else ""))
    table = Table(title=f"run {rep.run_id}", show_lines=False)
    table.add_column("output")
    table.add_column("location", overflow="fold")
    for key, label in labels.items():
        if key in rep.artifacts:
            table.add_row(label, _short(rep.artifacts[key]))
    console.print(table)
    if rep.ingest:
        i = rep.ingest
        console.print(f"ingest: {i['inputs']} inputs -> {i['written']} written, "
                      f"{i.get('exact_duplicates', 0)} exact + {i.get('near_duplicates', 0)} near duplicates, "
                      f"{i['quarantined']} quarantined {i.get('quarantine_reasons') or ''}")
    if rep.anomalies:
        console.print(f"[yellow]data anomalies:[/] {'; '.join(rep.anomalies)}")
    if rep.metrics:
        mt = Table(title="evaluation on the eval split")
        mt.add_column("model")
        names = ["example_count", "binary_accuracy", "auc", "auc_pr", "precision", "recall", "f1_score"]
        for short in ("n", "accuracy", "AUC", "AUC-PR", "precision", "recall", "F1"):
            mt.add_column(short, justify="right")
        for model, values in rep.metrics.items():
            mt.add_row(model, *[f"{values[n]:.3f}" if n in values and n != "example_count"
                                else f"{values.get(n, float('nan')):.0f}" for n in names])
        console.print(mt)
    cal = (rep.calibration or {}).get("candidate")
    if cal:
        console.print(f"calibrated threshold {cal['threshold']:.4f} (FPR <= {cal['target_fpr']:g} on "
                      f"{cal['n_real']} real images): TPR {cal['tpr']:.3f} at FPR {cal['fpr']:.3f}; "
                      f"at 0.5: TPR {cal['tpr_at_0.5']:.3f}, FPR {cal['fpr_at_0.5']:.3f}")
    if rep.robustness.get("perturbations"):
        console.print("robustness (accuracy drop, limit {:g}): ".format(rep.robustness["max_allowed_drop"]) + ", ".join(
            f"{k} {v['accuracy_drop']:+.3f}" for k, v in rep.robustness["perturbations"].items()))
    if rep.blessed is None:
        console.print("[red]no blessing: the evaluator did not finish[/]")
    elif rep.blessed:
        console.print("[green]BLESSED[/]: " + "; ".join(rep.blessing_reasons or ["the candidate cleared every threshold"]))
    else:
        console.print("[yellow]NOT BLESSED[/]: " + "; ".join(rep.validation_failures))
    console.print(f"pushed: {rep.pushed_version} ({_short(rep.pushed_to)})" if rep.pushed_to
                  else "pushed: nothing (not blessed)")


# Command groups that live in their own modules (each attaches itself to `main` on import).
for _module in ("pipeline.cli_ingest", "pipeline.cli_registry", "pipeline.cli_cloud", "pipeline.cli_curate"):
    try:
        __import__(_module)
    except ModuleNotFoundError as _e:
        if _e.name != _module:
            raise


if __name__ == "__main__":
    sys.exit(main())
