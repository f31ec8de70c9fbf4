"""The ingestion job's Beam arguments, decided without importing Beam (the `ingest` command checks
them, and refuses a wrong --output, before it loads the job): the DirectRunner's parallelism and
the options a Dataflow job cannot run without."""
from __future__ import annotations

import os
from collections.abc import Sequence


def is_local_runner(beam_args: Sequence[str]) -> bool:
    runner = None
    for a in beam_args:
        if a.startswith("--runner="):
            runner = a.split("=", 1)[1]
    return runner in (None, "DirectRunner", "direct", "Direct", "SwitchingDirectRunner")


def parallelism_args(beam_args: Sequence[str], workers: int = 0) -> list[str]:
    """The ingestion job's parallelism on the DirectRunner: one SDK worker process per CPU core (or
    `ingest.workers`); scanning and shard writing then run in parallel, since no image bytes cross
    processes. Nothing for other runners. (`synthdetect ingest` and the pipeline's ImageExampleGen
    both use this.)"""
    if not is_local_runner(beam_args):
        return []
    n = workers or os.cpu_count() or 1
    return ["--direct_running_mode=multi_processing", f"--direct_num_workers={n}"] if n > 1 else \
        ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


DATAFLOW_RUNNERS = ("DataflowRunner", "dataflow", "Dataflow")


def dataflow_preflight(beam_args: Sequence[str]) -> list[str]:
    """The options a Dataflow job needs and `beam_args` lacks, each as "--option (why)"; [] for other
    runners or when nothing is missing. Checked before any work: without it Beam reads the whole input
    and then names only the first missing option. (Beam uses either of temp_location /
    staging_location for the other, so one gs:// location is enough.)"""
    runner = None
    for i, a in enumerate(beam_args):
        if a.startswith("--runner="):
            runner = a.split("=", 1)[1]
        elif a == "--runner" and i + 1 < len(beam_args):
            runner = beam_args[i + 1]
    if runner not in DATAFLOW_RUNNERS:
        return []
    from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
    gcp = PipelineOptions(list(beam_args)).view_as(GoogleCloudOptions)
    missing = []
    if not gcp.project:
        missing.append("--project (the Google Cloud project id)")
    if not gcp.region:
        missing.append("--region (e.g. europe-west4)")
    locations = [x for x in (gcp.temp_location, gcp.staging_location) if x]
    if not any(x.startswith("gs://") for x in locations):
        given = f", not {locations[0]!r}" if locations else ""
        missing.append(f"--temp_location (a gs:// folder{given}; or --staging_location)")
    return missing


def beam_options(beam_args: Sequence[str]) -> dict:
    """The Beam pipeline options `beam_args` set (what the job would run with), as a dict."""
    from apache_beam.options.pipeline_options import PipelineOptions
    return PipelineOptions(list(beam_args)).get_all_options(drop_default=True)


def ingest_beam_args(beam_args: Sequence[str], workers: int = 0) -> list[str]:
    """`parallelism_args` followed by `beam_args` (given later, the user's args win)."""
    return parallelism_args(beam_args, workers) + list(beam_args)
