"""Local pipeline runs as ML Metadata records them: one summary line per run (`synthdetect runs`) and
the lineage of one run (`synthdetect runs show RUN`). ML Metadata is read through pipeline/artifacts.py.

A run's status is decided from what its components produce and consume (artifact types and event
keys), not from their ids, so the summaries survive changes to the graph (another pusher, an extra
release check). Its release decision (blessed, reasons, pushed version) is `RunOutputs.verdict()`'s,
as `synthdetect report` shows it.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
from collections.abc import Sequence

from components.ingest.outputs import SUMMARY_FILE
from components.release_check.blessing import BLESSED_PROPERTY
from pipeline import process_record
from pipeline.artifacts import (OutputUnreadable, RunRecord, custom_int, custom_str, find_run, node_of_execution,
                                open_store, run_contexts, unregistered_output_dirs)
from pipeline.pipeline import EXAMPLE_GEN, EXAMPLES, PRODUCTION_MODEL

NOT_RUN = "not run"


@dataclasses.dataclass
class RunSummary:
    run_id: str
    start: str | None                  # ISO time of the first component's start
    end: str | None                    # ISO time of the last component's last update (None while running)
    status: str    # complete | failed | running | interrupted | incomplete (stopped before the pusher)
    components: dict[str, str]         # component id -> complete | cached | failed | running | interrupted | not run
    data_fingerprint: str | None       # "sha256:<hex>" of ImageExampleGen's ingest_summary.json
    blessed: bool | None               # the blessing the pusher acted on (None: not evaluated)
    pushed_version: str | None         # None: not pushed
    pushed_to: str | None = None
    process: dict | None = None        # pid, host, state (alive | gone | unknown), outcome; None: not recorded
    reasons: list[str] = dataclasses.field(default_factory=list)  # the release check's reasons (RunOutputs.verdict)
    unreadable: str | None = None      # an output it recorded that cannot be read (OutputUnreadable): listed anyway


def _iso(ms: int | None) -> str | None:
    if not ms:
        return None
    return datetime.datetime.fromtimestamp(ms / 1000).isoformat(timespec="seconds")


UNREADABLE = "unreadable"


def _record(metadata_path: str | None, run_id: str) -> tuple[dict | None, dict | None]:
    """(the run's process and its state, its record). State `unreadable` (with `error`, no record) for
    a record that cannot be used: the run is still listed, with what ML Metadata knows."""
    why = process_record.problem(metadata_path, run_id) if metadata_path else None
    if why:
        return {"pid": None, "host": None, "state": UNREADABLE, "outcome": None, "ended_at": None, "error": why}, None
    record = process_record.read(metadata_path, run_id) if metadata_path else None
    return (_process_of(record) if record is not None else None), record


def _process(metadata_path: str | None, run_id: str) -> dict | None:
    return _record(metadata_path, run_id)[0]


def _process_of(record: dict) -> dict:
    return {"pid": record.get("pid"), "host": record.get("host"), "state": process_record.state(record),
            "outcome": record.get("outcome"), "ended_at": record.get("ended_at")}


def _unstarted(metadata_path: str, pipeline_name: str, known_runs: set[str], all_nodes=()) -> list[RunSummary]:
    """Runs known only from their process record: stopped (or still starting) before TFX created the
    run's context in ML Metadata, so ML Metadata has nothing of them. Records of runs ML Metadata
    knows (`known_runs`: every pipeline's) and of other pipelines are left out."""
    out = []
    for record in process_record.records(metadata_path):
        if record["run_id"] in known_runs or record.get("pipeline") not in (None, pipeline_name):
            continue
        process = _process_of(record)
        if process["state"] != process_record.GONE:
            status = "running"           # starting, or on another host (cannot be checked)
        elif process["outcome"] in (None, "interrupted"):
            status = "interrupted"       # SIGKILL, OOM, reboot, Ctrl-C before the first component
        else:
            status = "failed" if process["outcome"] == "failed" else "incomplete"
        out.append(RunSummary(run_id=record["run_id"], start=record.get("started_at"),
                              end=None if status == "running" else (record.get("ended_at") or record.get("started_at")),
                              status=status, components={n: NOT_RUN for n in all_nodes}, data_fingerprint=None,
                              blessed=None, pushed_version=None, process=process))
    return out


def _all_run_names(store) -> set[str]:
    return {c.name for c in store.get_contexts_by_type("pipeline_run")}


def _status(run: RunRecord, process: dict | None) -> tuple[str, bool]:
    """(run status, whether its unfinished executions were interrupted)."""
    # Graphs change between runs (components added or renamed): a run is complete when nothing
    # failed or is still running and its last stage, the pusher (whatever produced a PushedModel,
    # pushed or not), finished.
    states = {run.state(e) for e in run.executions}
    if states & {"failed", "canceled"}:
        return "failed", False
    if states & {"running", "new"}:
        # ML Metadata keeps a killed run's component RUNNING forever: ask whether its process lives
        if process is not None and process["state"] == process_record.GONE:
            return ("failed" if process["outcome"] == "failed" else "interrupted"), True
        return "running", False
    if run.outputs_of_type("PushedModel") and states <= {"complete", "cached"}:
        return "complete", False
    return "incomplete", False


def _execution_state(run: RunRecord, e, interrupted: bool) -> str:
    state = run.state(e)
    return "interrupted" if interrupted and state in ("running", "new") else state


def status(run: RunRecord, metadata_path: str | None = None) -> str:
    """A run's status as `synthdetect runs` shows it: complete, running, interrupted, failed, incomplete."""
    return _status(run, _process(metadata_path, run.run_id))[0]


def summarize(run: RunRecord, all_nodes: Sequence[str] = (), metadata_path: str | None = None) -> RunSummary:
    """One run's summary line (`all_nodes`: the components to list as "not run" when it has none)."""
    process, record = _record(metadata_path, run.run_id)
    status, interrupted = _status(run, process)
    # what the run set out to execute (its process record), else every component this pipeline ever ran
    components = {n: NOT_RUN for n in process_record.components(record) or all_nodes}
    for e in run.executions:
        components[run.node(e.id)] = _execution_state(run, e, interrupted)
    start = min((e.create_time_since_epoch for e in run.executions), default=run.ctx.create_time_since_epoch)
    end = max((e.last_update_time_since_epoch for e in run.executions), default=None) if status != "running" else None
    outputs = run.outputs()
    try:
        verdict = outputs.verdict(figures=False)
        decision: dict = {"data_fingerprint": outputs.data_fingerprint(), "blessed": verdict.blessed,
                          "pushed_version": verdict.pushed_version, "pushed_to": verdict.pushed_to,
                          "reasons": verdict.reasons}
    except OutputUnreadable as e:   # one run's damaged output does not hide it, nor the other runs
        decision = {"data_fingerprint": None, "blessed": None, "pushed_version": None, "unreadable": str(e)}
    return RunSummary(run_id=run.run_id, start=_iso(start), end=_iso(end), status=status, components=components,
                      process=process, **decision)


def list_runs(metadata_path: str, pipeline_name: str, pipeline_root: str) -> list[RunSummary]:
    """Every run of the pipeline in this ML Metadata database, and the runs stopped before TFX
    created their context (from their process records), newest first. FileNotFoundError when
    there is neither a database nor such a run."""
    try:
        store = open_store(metadata_path)
    except FileNotFoundError:   # killed before TFX created the database: only process records
        unstarted = _unstarted(metadata_path, pipeline_name, set())
        if not unstarted:
            raise
        return sorted(unstarted, key=lambda s: s.start or "", reverse=True)
    node_of, all_nodes = node_of_execution(store, pipeline_name)
    ctxs = sorted(run_contexts(store, pipeline_name), key=lambda c: (c.create_time_since_epoch, c.id), reverse=True)
    summaries = [summarize(RunRecord(store, c, node_of), all_nodes, metadata_path) for c in ctxs]
    unstarted = _unstarted(metadata_path, pipeline_name, _all_run_names(store), all_nodes)
    return sorted(summaries + unstarted, key=lambda s: s.start or "", reverse=True) if unstarted else summaries


def partial_outputs(metadata_path: str, pipeline_name: str, pipeline_root: str) -> list[str]:
    """Output folders of executions that will never finish: FAILED ones, and RUNNING ones of runs
    whose process is gone. TFX creates their folders before running a component but registers the
    artifacts in ML Metadata only when it succeeds, so no reader (runs, report, curate, the cache)
    ever sees these folders; they are only disk space and confusion. A folder that ML Metadata
    knows as an artifact is never listed."""
    if not os.path.exists(metadata_path) or pipeline_root.startswith("gs://"):
        return []
    store = open_store(metadata_path)
    node_of, _ = node_of_execution(store, pipeline_name)
    known = {os.path.normpath(a.uri) for a in store.get_artifacts()}
    out = []
    for ctx in run_contexts(store, pipeline_name):
        run = RunRecord(store, ctx, node_of)
        _, interrupted = _status(run, _process(metadata_path, ctx.name))
        for e in run.executions:
            state = run.state(e)
            if (state == "failed" or (interrupted and state in ("running", "new"))) and e.id in node_of:
                out += [d for d in unregistered_output_dirs(pipeline_root, node_of[e.id], e.id)
                        if os.path.normpath(d) not in known]
    return sorted(out)


def remove_partial_outputs(metadata_path: str, pipeline_name: str, pipeline_root: str) -> list[str]:
    """Deletes `partial_outputs(...)`; returns what was removed."""
    removed = []
    for d in partial_outputs(metadata_path, pipeline_name, pipeline_root):
        shutil.rmtree(d, ignore_errors=True)
        if not os.path.exists(d):
            removed.append(d)
    return removed


def run_lineage(metadata_path: str, pipeline_name: str, pipeline_root: str, run_id: str) -> dict:
    """What went into and came out of one run: ingest summary, models, evaluation, blessing, registry
    version, and each component's inputs -> outputs."""
    try:
        store = open_store(metadata_path)
        node_of, all_nodes = node_of_execution(store, pipeline_name)
        run = RunRecord(store, find_run(store, metadata_path, pipeline_name, run_id), node_of)
    except (FileNotFoundError, LookupError):
        unstarted = _unstarted_lineage(metadata_path, pipeline_name, run_id)
        if unstarted is None:
            raise
        return unstarted
    summary = summarize(run, all_nodes, metadata_path)
    _, interrupted = _status(run, summary.process)
    outputs = run.outputs()
    verdict = outputs.verdict()
    steps = []
    for e in run.executions:
        ins = sorted(run.name_of(a.id) or a.uri for a in run.inputs_of(e.id))
        outs = sorted(f"{key}: {a.uri}" for key, a in run.outputs_of(e.id))
        steps.append({"component": run.node(e.id), "state": _execution_state(run, e, interrupted),
                      "start": _iso(e.create_time_since_epoch), "end": _iso(e.last_update_time_since_epoch),
                      "inputs": ins, "outputs": outs})
    examples = run.output(EXAMPLE_GEN, EXAMPLES)
    # the models this run trained; the registry's production model it was compared with is an input
    # of the run (a copy), listed on its own
    models = [{"component": n, "uri": a.uri} for n, a in run.outputs_of_type("Model") if n != PRODUCTION_MODEL]
    production_model = next(({"uri": a.uri, "found": custom_int(a, "found") == 1,
                              "version": custom_str(a, "version") or None}
                             for n, a in run.outputs_of_type("Model") if n == PRODUCTION_MODEL), None)
    evaluations = [{"component": n, "uri": a.uri} for n, a in run.outputs_of_type("ModelEvaluation")]
    blessings = [{"component": n, "uri": a.uri, "blessed": custom_int(a, BLESSED_PROPERTY) == 1,
                  "model": custom_str(a, "current_model"), "baseline": custom_str(a, "baseline_model"),
                  # ProductionEvaluator without a production model: nothing was evaluated
                  **({"compared": False} if custom_int(a, "compared") == 0 else {})}
                 for n, a in run.outputs_of_type("ModelBlessing")]
    return {
        "run_id": run.run_id, "status": summary.status, "start": summary.start, "end": summary.end,
        "process": summary.process,
        "data": {"examples": examples.uri if examples else None,
                 "ingest_summary": os.path.join(examples.uri, SUMMARY_FILE) if examples else None,
                 "fingerprint": summary.data_fingerprint, "ingest": outputs.ingest_summary()},
        "models": models,
        "production_model": production_model,
        "evaluation": {"artifacts": evaluations, "metrics": verdict.metrics, "blessings": blessings,
                       "blessed": verdict.blessed, "reasons": verdict.failures, "production": verdict.production},
        "registry": {"pushed": verdict.pushed_version is not None, "version": verdict.pushed_version,
                     "destination": verdict.pushed_to},
        "steps": steps,
    }


def _unstarted_lineage(metadata_path: str, pipeline_name: str, run_id: str | None) -> dict | None:
    """`runs show` of a run known only from its process record (None if there is no such run)."""
    if run_id in (None, "", "latest"):
        return None
    try:
        known = _all_run_names(open_store(metadata_path))
    except FileNotFoundError:
        known = set()
    match = [s for s in _unstarted(metadata_path, pipeline_name, known) if s.run_id == run_id]
    if not match:
        return None
    s = match[0]
    return {"run_id": s.run_id, "status": s.status, "start": s.start, "end": s.end, "process": s.process,
            "data": {"examples": None, "ingest_summary": None, "fingerprint": None, "ingest": None},
            "models": [], "production_model": None,
            "evaluation": {"artifacts": [], "metrics": {}, "blessings": [], "blessed": None, "reasons": []},
            "registry": {"pushed": False, "version": None, "destination": None}, "steps": []}


def to_json(obj) -> str:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    elif isinstance(obj, list):
        obj = [dataclasses.asdict(o) if dataclasses.is_dataclass(o) and not isinstance(o, type) else o for o in obj]
    return json.dumps(obj, indent=2, sort_keys=True)
