"""`synthdetect ingest`: the pipeline's ingestion step on its own (Beam, local or Dataflow)."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback

import click

from pipeline.cli.common import (UserError, config_option, console, feedback_lines, load, progress_console,
                                 set_option)


def _no_space(e: BaseException | None) -> bool:
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(e) or "[Errno 28]" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


@contextlib.contextmanager
def _stderr_to(log: str):
    """While the job runs, file descriptor 2 (inherited by Beam's worker processes) goes to `log`,
    and this process's own stderr (progress bars, the one `error:` line) to the terminal as before:
    a Ctrl-C reaches every worker, and their tracebacks belong in the log, not beside that line."""
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 2)
    os.close(fd)
    old = sys.stderr
    sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding=getattr(old, "encoding", None) or "utf-8",
                           errors="replace")
    logf = open(log, "a", buffering=1)

    def to_log(args) -> None:   # Beam's threads die noisily when their workers are interrupted
        traceback.print_exception(args.exc_type, args.exc_value, args.exc_traceback, file=logf)
    threading.excepthook = to_log   # kept after the job too: such threads may end during the unwinding
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = old
        os.dup2(saved, 2)
        os.close(saved)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _watch(progress_dir: str, n_items: int, stop: threading.Event, show: bool, times: dict) -> None:
    """Progress bars from the workers' tick files (files scanned, then examples written), and the
    moment each phase ended (for the timing line printed at the end)."""
    import contextlib

    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    from components.ingest.job import count_progress, planned_writes
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), console=progress_console, transient=True, disable=not show)
    with bar if show else contextlib.nullcontext():
        scan = bar.add_task("scanning files", total=n_items)
        write = None
        while not stop.wait(0.2):
            done = count_progress(progress_dir, "scan")
            if done and "scan_start" not in times:
                times["scan_start"] = time.time()
            if done >= n_items and "scan_end" not in times:
                times["scan_end"] = time.time()
            bar.update(scan, completed=done)
            total = planned_writes(progress_dir)
            if total is not None:
                times.setdefault("plan_end", time.time())
                if write is None:
                    write = bar.add_task("writing examples", total=total)
                written = count_progress(progress_dir, "write")
                if written >= total:
                    times.setdefault("write_end", time.time())
                bar.update(write, completed=written)


def _load_for_ingest(config: str, sets: tuple[str, ...], data_input: str):
    """The config's ingestion-related sections. Ingestion trains nothing, so the model section's
    files (model.weights) are not required to exist; without --config and without the default file
    (ingest run outside the repository), the built-in defaults apply."""
    import json as _json

    from pipeline.cli.common import DEFAULT_CONFIG
    overrides = sets + (f"data.input={_json.dumps(data_input)}", "model.weights=none")
    if config == DEFAULT_CONFIG and not os.path.exists(config):
        from pydantic import ValidationError

        from schemas.config import PipelineConfig, _one_line
        from pipeline.cli.common import parse_sets
        progress_console.print(f"no {DEFAULT_CONFIG} here: built-in ingestion defaults (synthdetect config "
                               "shows them; --config FILE for others)", soft_wrap=True)
        try:
            return PipelineConfig.model_validate(parse_sets(overrides)).resolved()
        except ValidationError as e:
            raise UserError(f"invalid settings: {_one_line(e)}") from None
    return load(config, overrides)


@click.command()
@click.option("--input", "data_input", required=True,
              help="folder <root>/<real|synthesized>/..., a manifest .csv/.jsonl, or gs://...")
@click.option("--output", "out_dir", required=True,
              help="output folder (local or gs://) for Split-*/ TFRecords; replaced only when ingestion succeeds")
@config_option
@set_option
@click.option("--beam-arg", "beam_args", multiple=True,
              help="Beam pipeline arg (repeatable), e.g. --beam-arg=--runner=DataflowRunner; default: DirectRunner "
                   "with one worker process per CPU core (ingest.workers)")
@click.option("--progress/--no-progress", default=True, show_default=True, help="show progress bars (local runs)")
@click.option("--dry-run", is_flag=True, help="check the Beam options (Dataflow: --project, --region, --temp_location) "
                                              "and print the ones the job would use as JSON; read and write nothing")
@click.option("--json", "as_json", is_flag=True,
              help="print the ingest summary as JSON on stdout (with `output`: where it was written)")
def ingest(data_input: str, out_dir: str, config: str, sets: tuple[str, ...], beam_args: tuple[str, ...],
           progress: bool, dry_run: bool, as_json: bool) -> None:
    """Validate, quarantine, deduplicate and split images into TFRecords (+ ingest_summary.json,
    members.jsonl, quarantine.jsonl).

    The output is written into a temporary folder next to --output and replaces it only when the
    job succeeded; a lock file (<output>.lock) makes a second ingestion into the same output fail."""
    cfg = _load_for_ingest(config, sets, data_input)
    # what is wrong with the arguments is said before Beam (about 5 s) is loaded
    from components.ingest import outputs
    from components.ingest.beam_args import beam_options, dataflow_preflight, ingest_beam_args, is_local_runner

    args = ingest_beam_args(list(beam_args), cfg.ingest.workers)
    missing = dataflow_preflight(args)   # before any work: every missing option at once
    if missing:
        raise UserError(f"the Dataflow runner needs {len(missing)} more Beam option(s): " + "; ".join(missing)
                        + " (e.g. --beam-arg=--project=MY_PROJECT); nothing was read or written")
    # TODO(lead): with every option given, missing credentials end as a raw DefaultCredentialsError;
    # the one-line credentials message of `submit` is being built on branch `reliability`: call it here.
    if dry_run:
        click.echo(json.dumps(beam_options(args), indent=2, sort_keys=True, default=str))
        return
    given = out_dir
    inputs = [cfg.data.input, *(h.input for h in cfg.evaluation.holdout_sets), cfg.ingest.feedback or ""]
    try:   # before any work: what may be replaced (never an input, nor a folder of someone else's files)
        out_dir = outputs.safe_output(out_dir.rstrip("/") if out_dir.strip("/") else out_dir, inputs)
    except outputs.OutputError as e:
        raise UserError(str(e)) from None
    if not out_dir.startswith("gs://") and os.path.abspath(given) != out_dir:
        progress_console.print(f"--output {given} resolves to {out_dir}: writing there", soft_wrap=True)
    from components.ingest.job import run_ingest
    from components.ingest.listing import InputError, resolve_run_inputs
    from pipeline.logs import route_library_logs
    from pipeline.reaper import Reaper
    opts = cfg.ingest
    job_log = os.path.join(tempfile.gettempdir(), f"synthdetect-ingest-{os.getpid()}.log")
    buckets = list(cfg.data.split_ratios.items())
    route_library_logs([], 30)
    t0 = time.time()
    progress_dir = None
    stop = threading.Event()
    times: dict[str, float] = {"start": t0}
    listing = None
    try:
        with outputs.OutputLock(out_dir) as lock:
            if lock.took_over:
                progress_console.print(f"[yellow]warning:[/] took over the lock of pid {lock.took_over.get('pid')}, "
                                       "which is gone; removing what it left", soft_wrap=True)
            listing = resolve_run_inputs(cfg.data.input, opts, [(h.name, h.input) for h in cfg.evaluation.holdout_sets],
                                         cfg.evaluation.leave_out.model_dump() if cfg.evaluation.leave_out else None)
            n_read = len(listing.items)
            progress_console.print(f"{listing.n_inputs} inputs from {cfg.data.input} ({n_read} to read, "
                                   f"{listing.n_inputs - n_read} decided at listing)", soft_wrap=True)
            if listing.feedback:
                feedback_lines(listing.feedback)
            if is_local_runner(args):
                progress_dir = tempfile.mkdtemp(prefix="synthdetect-progress-")
            watcher = threading.Thread(target=_watch, args=(progress_dir, n_read, stop, progress, times),
                                       daemon=True) if progress_dir else None
            with outputs.atomic_output(out_dir) as tmp, Reaper([progress_dir or ""]), \
                    _stderr_to(job_log):
                if watcher:
                    watcher.start()
                try:
                    times["job_start"] = time.time()
                    s = run_ingest(listing, tmp, opts, buckets, args, progress_dir)
                    times["job_end"] = time.time()
                finally:
                    stop.set()
                    if watcher:
                        watcher.join()
    except (outputs.OutputError, InputError) as e:
        raise UserError(str(e)) from None
    except KeyboardInterrupt:
        raise UserError("interrupted; the previous output (if any) is unchanged (workers stopped; their output: "
                        f"{job_log})") from None
    except Exception as e:  # noqa: BLE001 - one line for the user, the whole story in a log file
        if _no_space(e):
            need = 2 * sum(max(it.size, 0) for it in listing.items) if listing else 0
            where = os.path.dirname(os.path.abspath(out_dir)) if not out_dir.startswith("gs://") else out_dir
            raise UserError(f"no space left on the device while writing the output next to {where}: ingestion "
                            f"needs up to about {_human(need)} free there (spill + output, twice the input's "
                            f"{_human(need / 2)}); the previous output (if any) is unchanged") from None
        log = job_log
        with open(log, "a") as f:
            traceback.print_exception(type(e), e, e.__traceback__, file=f)
        last = (str(e).strip().splitlines() or [type(e).__name__])[-1][:300]
        raise UserError(f"ingestion failed: {type(e).__name__}: {last} (full traceback: {log}); "
                        "the previous output (if any) is unchanged") from None
    finally:
        if progress_dir:
            shutil.rmtree(progress_dir, ignore_errors=True)
    dt = time.time() - t0
    if as_json:
        click.echo(json.dumps({**s, "output": out_dir, "seconds": round(dt, 1)}, indent=2, sort_keys=True))
        if not s["accounted_for"]:
            raise UserError("ingest summary does not account for every input (see ingest_summary.json)")
        return
    console.print(f"{s['inputs']} inputs -> {s['written']} written, {s['exact_duplicates']} exact duplicates, "
                  f"{s['near_duplicates']} near duplicates, {s['quarantined']} quarantined "
                  f"{s['quarantine_reasons'] or ''}, {s['skipped']} skipped {s['skip_reasons'] or ''} "
                  f"in {dt:.1f}s ({s['inputs'] / max(dt, 1e-9):.1f} files/s)", soft_wrap=True)
    console.print(f"splits: {s['written_by_split']}", soft_wrap=True)
    for name, h in (s.get("holdout_sets") or {}).items():
        console.print(f"held-out set {name}: {h['inputs']} inputs -> {h['written']} written to {h['split']}, "
                      f"{h['leaked_into_training']} leaked into training (dropped)", soft_wrap=True)
    console.print(f"wrote {out_dir}/Split-*/, ingest_summary.json, members.jsonl, quarantine.jsonl", soft_wrap=True)
    if {"scan_end", "plan_end", "write_end"} <= set(times):
        t = times
        scan_start = t.get("scan_start", t["job_start"])
        progress_console.print(
            f"time: listing {t['job_start'] - t['start']:.1f}s, start-up {scan_start - t['job_start']:.1f}s, "
            f"scan {t['scan_end'] - scan_start:.1f}s, plan {t['plan_end'] - t['scan_end']:.1f}s, "
            f"write {t['write_end'] - t['plan_end']:.1f}s, finish {t['job_end'] - t['write_end']:.1f}s, "
            f"replace {t0 + dt - t['job_end']:.1f}s", soft_wrap=True)
    for w in s.get("warnings", []):
        progress_console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    if not s["accounted_for"]:
        raise UserError("ingest summary does not account for every input (see ingest_summary.json)")   # exit 1
