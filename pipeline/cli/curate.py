"""`synthdetect curate`: the curators' FiftyOne dataset, its App, and the feedback file.

  synthdetect curate [--run RUN|latest] [--name NAME] [--model run|none|registry:REF|PATH]
  synthdetect curate --launch [--port P] [--address A]     (builds first if the dataset is missing)
  synthdetect curate export-feedback --out FILE
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys

import click

from pipeline.cli.common import UserError, config_option, json_option, load, set_option, user_errors


def _run_outputs(cfg, run: str | None):
    """The outputs of a run recorded in ML Metadata (`latest` or None: the newest)."""
    from pipeline.artifacts import RunRecord
    with user_errors(FileNotFoundError, LookupError):
        outputs = RunRecord.load(cfg.metadata_path, cfg.pipeline_name, run).outputs()
    if not outputs.examples:
        raise UserError(f"run {outputs.run_id!r} has no ingestion output (ImageExampleGen did not finish)")
    return outputs


def _model(ref: str, cfg, outputs) -> tuple[str | None, float | None]:
    """--model value -> (SavedModel directory or None, its calibrated threshold or None)."""
    from components.scoring.models import ModelError, resolve_model
    from pipeline.artifacts import OutputUnreadable
    if ref == "none":
        return None, None
    with user_errors(ModelError, OutputUnreadable):
        model = outputs.resolved_model() if ref == "run" else resolve_model(ref, cfg.registry)
    if model is None:
        raise UserError(f"run {outputs.run_id!r} trained no candidate model; use --model PATH|registry:REF|none")
    return model.path, model.threshold


def _connect() -> None:
    from components.curation.app import ensure_database
    from components.curation.members import CurationError
    try:
        ensure_database()
    except CurationError as e:
        raise UserError(str(e)) from None


@click.group(invoke_without_command=True)
@config_option
@set_option
@click.option("--run", "run", default=None, metavar="RUN|latest", help="pipeline run to curate (default: latest)")
@click.option("--examples", "examples", default=None, type=click.Path(file_okay=False),
              help="curate an ingestion output folder (`synthdetect ingest --output`) instead of a run")
@click.option("--name", default=None, help="FiftyOne dataset name (default: the pipeline name)")
@click.option("--model", "model", default="run", show_default=True, metavar="run|none|registry:REF|PATH",
              help="model for predictions: the run's candidate, none, a registry reference or a SavedModel path")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="decision threshold (default: the model's calibrated threshold, else 0.5)")
@click.option("--uncertain-margin", type=click.FloatRange(0, 0.5), default=0.1, show_default=True,
              help="`uncertain` view: |p_synthesized - threshold| below this")
@click.option("--map-method", type=click.Choice(["tsne", "pca"]), default="tsne", show_default=True,
              help="2-D embeddings map (brain key embedding_map): t-SNE or PCA (scikit-learn)")
@click.option("--launch", is_flag=True, help="serve the FiftyOne App (building the dataset first if needed)")
@click.option("--port", type=click.IntRange(1, 65535), default=5151, show_default=True)
@click.option("--address", default="127.0.0.1", show_default=True,
              help="address the App binds (0.0.0.0 exposes it to the network)")
@click.option("--start-timeout", "start_timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="how long the App server may take to start, per attempt (default: "
              "$SYNTHDETECT_APP_START_TIMEOUT, else 120 s times the load average per core, at most 900 s; "
              "two attempts)")
@click.option("--view", default=None, help="saved view to open in the App")
@click.option("--json", "as_json", is_flag=True, help="print the build result as JSON")
@click.pass_context
def curate(ctx, config, sets, run, examples, name, model, threshold, uncertain_margin, map_method, launch, port,
           address, start_timeout, view, as_json) -> None:
    """Build or update the curators' FiftyOne dataset of a run (one sample per input file), or serve it."""
    import importlib.util
    if importlib.util.find_spec("fiftyone") is None:   # the runtime lock (the images) has no FiftyOne
        raise UserError("curation needs FiftyOne, a development dependency: install requirements-dev.lock "
                        "(make bootstrap)")
    ctx.ensure_object(dict)
    ctx.obj.update(config=config, sets=sets, name=name)
    if ctx.invoked_subcommand is not None:
        return
    from components.curation.members import CurationError
    cfg = load(config, sets)
    name = name or cfg.pipeline_name
    if launch:   # a port held by another program: said before MongoDB and FiftyOne start
        from components.curation.app import port_is_free
        try:
            port_is_free(address, port)
        except CurationError as e:
            raise UserError(str(e)) from None
    _connect()
    import fiftyone as fo
    if not launch or run is not None or examples is not None or not fo.dataset_exists(name):
        if examples is not None:
            if run is not None:
                raise UserError("--run and --examples are alternatives; give one")
            from pipeline.artifacts import RunOutputs
            outputs = RunOutputs.of_examples(os.path.abspath(examples))
            model = "none" if model == "run" else model
        else:
            outputs = _run_outputs(cfg, run)
        from components.curation.dataset import build_dataset
        model_dir, model_threshold = _model(model, cfg, outputs)
        assert outputs.examples is not None   # of_examples sets it; _run_outputs refuses a run without
        try:
            res = build_dataset(name, outputs.run_id, outputs.examples, model_dir=model_dir,
                                threshold=threshold if threshold is not None else model_threshold,
                                uncertain_margin=uncertain_margin, map_method=map_method,
                                progress=lambda s: click.echo(s, err=True))
        except CurationError as e:
            raise UserError(str(e)) from None
        if as_json:
            import dataclasses
            click.echo(json.dumps(dataclasses.asdict(res), indent=2, sort_keys=True))
        else:
            st = res.by_status
            click.echo(f"dataset {res.name!r} (run {res.run_id}): {res.samples} samples = {st['written']} written + "
                       f"{st['exact_duplicate']} exact duplicates + {st['near_duplicate']} near duplicates + "
                       f"{st['quarantined']} quarantined"
                       + (f" + {st['leaked_into_training']} held-out duplicates of training images"
                          if st.get("leaked_into_training") else "")
                       + f"; {res.predicted} scored"
                       + (f" at threshold {res.threshold:g}" if res.threshold is not None else ""))
            from components.curation.brain import BrainStatus
            click.echo(BrainStatus(**res.brain).line()
                       + (f"; mistakenness of {res.mistakenness} labels" if res.mistakenness else ""))
            if res.map_png:
                click.echo(f"map picture: {res.map_png}")
            click.echo("saved views: " + ", ".join(f"{k} ({v})" for k, v in res.views.items()))
            for note in res.notes:
                click.echo(f"note: {note}")
    if launch:
        _serve(name, address, port, view, start_timeout)


def _serve(name: str, address: str, port: int, view: str | None, start_timeout: float | None = None) -> None:
    from components.curation.app import launch
    from components.curation.members import CurationError
    try:
        session = launch(name, address=address, port=port, view=view, timeout=start_timeout,
                         progress=lambda line: click.echo(line, err=True))
    except CurationError as e:
        raise UserError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - e.g. the port is taken
        raise UserError(f"cannot start the FiftyOne App on {address}:{port}: {type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}") from None
    host = "localhost" if address in ("127.0.0.1", "localhost") else address

    def stop(signum, frame):  # SIGTERM, and SIGINT even where a background shell ignored it
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)   # before "serving": a stop right after it still stops cleanly
    signal.signal(signal.SIGINT, stop)
    try:
        click.echo(f"FiftyOne App serving dataset {name!r} at http://{host}:{port}/ (Ctrl-C to stop)", err=True)
        sys.stderr.flush()
        session.wait(-1)
    except KeyboardInterrupt:
        pass
    finally:
        import fiftyone as fo
        fo.close_app()  # stops the App server process too
        click.echo("FiftyOne App stopped", err=True)


@curate.command("export-feedback")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="feedback file to write (JSONL); pass it to the next run as ingest.feedback")
@click.option("--name", default=None, help="FiftyOne dataset name (default: the pipeline name)")
@json_option
@click.pass_context
def export_feedback_cmd(ctx, out: str, name: str | None, as_json: bool) -> None:
    """Write curator decisions (tags `exclude`, `relabel:<label>`) as the feedback file ingestion honours."""
    from components.curation.feedback import export_feedback
    from components.curation.members import CurationError
    cfg = load(ctx.obj["config"], ctx.obj["sets"])
    name = name or ctx.obj.get("name") or cfg.pipeline_name
    _connect()
    import fiftyone as fo
    if not fo.dataset_exists(name):
        raise UserError(f"no FiftyOne dataset {name!r}; build it first with `synthdetect curate --run latest`")
    try:
        res = export_feedback(fo.load_dataset(name), out)
    except CurationError as e:
        raise UserError(str(e)) from None
    if as_json:
        click.echo(json.dumps({**dataclasses.asdict(res), "path": os.path.abspath(out),
                               "decisions": res.excluded + res.relabeled}, indent=2, sort_keys=True))
        return
    click.echo(f"wrote {res.excluded + res.relabeled} decisions ({res.excluded} exclude, {res.relabeled} relabel"
               + (f"; {res.both} tagged both, exported as exclude" if res.both else "")
               + f") to {out}; the next run honours them with --set ingest.feedback={os.path.abspath(out)}")
