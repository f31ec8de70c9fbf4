"""`synthdetect report [RUN]`: what a run produced (data, statistics, evaluation, blessing, pushed
model), read back from ML Metadata; `--out DIR` also writes the Markdown + PNG report."""
from __future__ import annotations

import click

from pipeline.cli.common import (UserError, config_option, console, json_option, load, progress_console, set_option,
                                 short, user_errors)


def output_labels() -> dict[tuple[str, str], str]:
    """The outputs the report's table shows, in order: (component id, output key) -> label."""
    from pipeline.pipeline import (ANOMALIES, BASELINE_TRAINER, BLESSING, CANDIDATE_TRAINER, CHECK, EVALUATION,
                                   EVALUATOR, EXAMPLE_GEN, EXAMPLE_VALIDATOR, EXAMPLES, MODEL, PRODUCTION_EVALUATOR,
                                   PRODUCTION_MODEL, RELEASE_CHECK, STATISTICS, STATISTICS_GEN, TRANSFORM,
                                   TRANSFORM_GRAPH)
    return {
        (EXAMPLE_GEN, EXAMPLES): "TFRecords (train/eval splits)",
        (STATISTICS_GEN, STATISTICS): "statistics (TFDV)",
        (EXAMPLE_VALIDATOR, ANOMALIES): "anomalies vs schemas/schema.pbtxt",
        (TRANSFORM, TRANSFORM_GRAPH): "transform graph",
        (CANDIDATE_TRAINER, MODEL): "model: vgg16_finetune (candidate)",
        (BASELINE_TRAINER, MODEL): "model: baseline (from scratch)",
        (EVALUATOR, EVALUATION): "evaluation (TFMA)",
        (EVALUATOR, BLESSING): "blessing (TFMA)",
        (PRODUCTION_MODEL, MODEL): "model: production (the registry's, when the run started)",
        (PRODUCTION_EVALUATOR, EVALUATION): "evaluation vs production (TFMA)",
        (RELEASE_CHECK, CHECK): "release check (calibration, robustness)",
        (RELEASE_CHECK, BLESSING): "blessing (final)",
    }


STATUS_WHY = {"interrupted": "its process is gone (killed?) before the run finished", "running": "still running",
              "failed": "a component failed", "incomplete": "stopped before the pusher"}


@click.command()
@click.argument("run", required=False, default=None)
@config_option
@set_option
@click.option("--run", "run_id", default=None, help="run id (same as the RUN argument; default: the latest run)")
@json_option
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
    cfg = load(config, sets)
    with user_errors(FileNotFoundError, LookupError):
        rep = run_report(cfg.metadata_path, cfg.pipeline_name, cfg.pipeline_root, run_id)
        md = write_markdown_report(rep, out_dir) if out_dir else None
    click.echo(rep.to_json()) if as_json else print_report(rep)
    if md:
        progress_console.print(f"report: {md}")


def _num(x, fmt: str = ".3f") -> str:
    return "–" if x is None else format(x, fmt)


def print_report(rep) -> None:
    from rich.table import Table

    from pipeline.artifacts import output_name
    if rep.status and rep.status != "complete":
        why = STATUS_WHY.get(rep.status, "")
        console.print(f"[yellow]run {rep.run_id}: {rep.status}[/]" + (f" ({why})" if why else ""))
    table = Table(title=f"run {rep.run_id}", show_lines=False)
    table.add_column("output")
    table.add_column("location", overflow="fold")
    for (component, key), label in output_labels().items():
        uri = rep.artifacts.get(output_name(component, key))
        if uri:
            table.add_row(label, short(uri))
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
        for col in ("n", "accuracy", "AUC", "AUC-PR", "precision", "recall", "F1"):
            mt.add_column(col, justify="right")
        for model, values in rep.metrics.items():
            mt.add_row(model, *[_num(values.get(n), ".0f" if n == "example_count" else ".3f") for n in names])
        console.print(mt)
    from pipeline.report import production_line
    console.print(production_line(rep.production))
    cal = (rep.calibration or {}).get("candidate")
    if cal:
        from pipeline.report import rate
        console.print(f"calibrated threshold {cal['threshold']:.4f} (FPR <= {cal['target_fpr']:g} on "
                      f"{cal['n_real']} real images): TPR {rate(cal['tpr'], 'tpr')} at FPR {rate(cal['fpr'], 'fpr')}; "
                      f"at 0.5: TPR {rate(cal['tpr_at_0.5'], 'tpr')}, FPR {rate(cal['fpr_at_0.5'], 'fpr')}")
    if rep.robustness.get("perturbations"):
        console.print("robustness (accuracy drop, limit {:g}): ".format(rep.robustness["max_allowed_drop"]) + ", ".join(
            f"{k} {v['accuracy_drop']:+.3f}" for k, v in rep.robustness["perturbations"].items()))
    if rep.holdout:
        ht = Table(title="held-out sets (never trained on)")
        for col in ("set", "model", "n (real/synth.)", "AUC", "basis", "gap", "TPR at target FPR", "accuracy"):
            ht.add_column(col, justify="left" if col in ("set", "model", "basis") else "right")
        for name, models in rep.holdout.items():
            for model, f in models.items():
                ht.add_row(name, model, f"{f['n_examples']} ({f['n_real']}/{f['n_synthesized']})", _num(f.get("auc")),
                           f.get("basis") or "", _num(f.get("gap"), "+.3f"), _num(f.get("tpr_at_target_fpr")),
                           _num(f.get("accuracy")))
        console.print(ht)
    if rep.blessed is None:
        console.print("[red]no blessing: the evaluator did not finish[/]")
    elif rep.blessed:
        console.print("[green]BLESSED[/]: "
                      + "; ".join(rep.blessing_reasons or ["the candidate cleared every threshold"]))
    else:
        console.print("[yellow]NOT BLESSED[/]: " + "; ".join(rep.validation_failures))
    console.print(f"pushed: {rep.pushed_version} ({short(rep.pushed_to)})" if rep.pushed_to
                  else f"pushed: nothing, {rep.duplicate_of} in the registry is the same model (same data, training "
                       "config and ingestion); aliases unchanged" if rep.duplicate_of
                  else "pushed: nothing (not blessed)" if rep.blessed is False
                  else "pushed: nothing")
