"""`synthdetect ingest`: the pipeline's ingestion step on its own (Beam, local or Dataflow)."""
from __future__ import annotations

import time

import click

from pipeline.cli import UserError, _load, config_option, console, main, set_option


@main.command()
@click.option("--input", "data_input", required=True,
              help="folder <root>/<real|synthesized>/..., a manifest .csv/.jsonl, or gs://...")
@click.option("--output", "out_dir", required=True, help="output folder (local or gs://) for Split-*/ TFRecords")
@config_option
@set_option
@click.option("--beam-arg", "beam_args", multiple=True,
              help="Beam pipeline arg (repeatable), e.g. --beam-arg=--runner=DataflowRunner or "
                   "--beam-arg=--direct_running_mode=multi_processing; default: DirectRunner in one process "
                   "(faster than multi-process up to at least 5,200 files here: see benchmarks/ingest.py)")
def ingest(data_input: str, out_dir: str, config: str, sets: tuple[str, ...], beam_args: tuple[str, ...]) -> None:
    """Validate, quarantine, deduplicate and split images into TFRecords (+ ingest_summary.json,
    members.jsonl, quarantine.jsonl)."""
    cfg = _load(config, sets + (f"data.input={data_input}",))
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from components.ingest.executor import build_ingest, read_summary
    from components.ingest.images import InputError, IngestOptions
    from pipeline.logs import route_library_logs

    opts = IngestOptions.from_dict(cfg.ingest.model_dump())
    buckets = list(cfg.data.split_ratios.items())
    args = list(beam_args) or ["--direct_running_mode=in_memory"]
    route_library_logs([], 30)
    t0 = time.time()
    try:
        with console.status("ingesting (Beam) ...", spinner="dots"):
            with beam.Pipeline(options=PipelineOptions(args)) as p:
                n = build_ingest(p, cfg.data.input, out_dir.rstrip("/"), opts, buckets)
                console.print(f"{n} input files from {cfg.data.input}")
    except InputError as e:
        raise UserError(str(e)) from None
    s = read_summary(out_dir)
    dt = time.time() - t0
    console.print(f"{s['inputs']} inputs -> {s['written']} written, {s['exact_duplicates']} exact duplicates, "
                  f"{s['near_duplicates']} near duplicates, {s['quarantined']} quarantined "
                  f"{s['quarantine_reasons'] or ''} in {dt:.1f}s ({s['inputs'] / max(dt, 1e-9):.1f} files/s)")
    console.print(f"splits: {s['written_by_split']}")
    console.print(f"wrote {out_dir}/Split-*/, ingest_summary.json, members.jsonl, quarantine.jsonl")
    if not s["accounted_for"]:
        raise click.ClickException("ingest summary does not account for every input (see ingest_summary.json)")
