"""Local pipeline runs as ML Metadata records them: one summary line per run (`synthdetect runs`) and
the lineage of one run (`synthdetect runs show RUN`). MLMD access goes through pipeline.report.

Components are recognised by what they produce and consume (artifact types and event keys), not by
their ids, so the summaries survive changes to the graph (another pusher, an extra release check).
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil

from ml_metadata.proto import metadata_store_pb2

from components.registry.store import INGEST_SUMMARY, fingerprint_of, read_ingest_summary
from pipeline import process_record
from pipeline.report import _component_of, open_store, run_report

_STATE = {metadata_store_pb2.Execution.NEW: "new", metadata_store_pb2.Execution.RUNNING: "running",
          metadata_store_pb2.Execution.COMPLETE: "complete", metadata_store_pb2.Execution.FAILED: "failed",
          metadata_store_pb2.Execution.CACHED: "cached", metadata_store_pb2.Execution.CANCELED: "canceled"}
NOT_RUN = "not run"


@dataclasses.dataclass
class RunSummary:
    run_id: str
    start: str | None                  # ISO time of the first component's start
    end: str | None                    # ISO time of the last component's last update (None while running)
    status: str                        # complete | failed | running | interrupted | incomplete (stopped before the pusher)
    components: dict[str, str]         # component id -> complete | cached | failed | running | interrupted | not run
    data_fingerprint: str | None       # "sha256:<hex>" of ImageExampleGen's ingest_summary.json
    blessed: bool | None               # the blessing the pusher acted on (None: not evaluated)
    pushed_version: str | None         # None: not pushed
    pushed_to: str | None = None
    process: dict | None = None        # pid, host, state (alive | gone | unknown), outcome; None: not recorded


def _iso(ms: int | None) -> str | None:
    if not ms:
        return None
    return datetime.datetime.fromtimestamp(ms / 1000).isoformat(timespec="seconds")


def _run_contexts(store, pipeline_name: str) -> list:
    runs = store.get_contexts_by_type("pipeline_run")
    pipeline_ctx = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_ctx is None:
        return []
    in_pipeline = {e.id for e in store.get_executions_by_context(pipeline_ctx.id)}
    return [r for r in runs if any(e.id in in_pipeline for e in store.get_executions_by_context(r.id))]


def _node_of_execution(store, pipeline_name: str) -> tuple[dict[int, str], list[str]]:
    """execution id -> component id, and every component id of the pipeline (in first-run order)."""
    prefix = f"{pipeline_name}."
    node_of: dict[int, str] = {}
    first_seen: dict[str, int] = {}
    for node in store.get_contexts_by_type("node"):
        if not node.name.startswith(prefix):
            continue
        node_id = node.name[len(prefix):]
        for e in store.get_executions_by_context(node.id):
            node_of[e.id] = node_id
            first_seen[node_id] = min(first_seen.get(node_id, e.id), e.id)
    return node_of, sorted(first_seen, key=first_seen.get)


def _fingerprint(examples_uri: str | None) -> str | None:
    if not examples_uri:
        return None
    try:
        return fingerprint_of(read_ingest_summary(examples_uri))
    except Exception:  # noqa: BLE001 - a missing summary is reported as no fingerprint
        return None


class _Run:
    """The MLMD records of one run: executions, artifacts and the events between them."""

    def __init__(self, store, ctx, pipeline_root: str, node_of: dict[int, str]):
        self.ctx = ctx
        self.executions = sorted(store.get_executions_by_context(ctx.id), key=lambda e: e.id)
        self.node_of = node_of
        ids = [e.id for e in self.executions]
        self.events = store.get_events_by_execution_ids(ids) if ids else []
        art_ids = sorted({ev.artifact_id for ev in self.events})
        self.artifacts = {a.id: a for a in (store.get_artifacts_by_id(art_ids) if art_ids else [])}
        self.type_name = {t.id: t.name for t in store.get_artifact_types()}
        self.pipeline_root = pipeline_root

    def node(self, execution_id: int) -> str:
        return self.node_of.get(execution_id, f"execution {execution_id}")

    def key(self, event) -> str:
        return event.path.steps[0].key if event.path.steps else ""

    def outputs(self, type_name: str):
        """(producer node, artifact) for artifacts of a type produced (or reused from cache) in this run."""
        out = []
        for ev in self.events:
            a = self.artifacts.get(ev.artifact_id)
            if a is not None and ev.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT) \
                    and self.type_name.get(a.type_id) == type_name:
                out.append((self.node(ev.execution_id), a))
        return out

    def inputs_of(self, execution_id: int, key: str):
        return [self.artifacts[ev.artifact_id] for ev in self.events
                if ev.execution_id == execution_id and ev.type == metadata_store_pb2.Event.INPUT
                and self.key(ev) == key and ev.artifact_id in self.artifacts]

    def producer(self, artifact_id: int) -> str | None:
        for ev in self.events:
            if ev.artifact_id == artifact_id and ev.type in (metadata_store_pb2.Event.OUTPUT,
                                                              metadata_store_pb2.Event.DECLARED_OUTPUT):
                return self.node(ev.execution_id)
        return None


def _int(a, name: str) -> int | None:
    p = a.custom_properties.get(name)
    return p.int_value if p is not None else None


def _str(a, name: str) -> str | None:
    p = a.custom_properties.get(name)
    return p.string_value if p is not None and p.string_value else None


def _process(metadata_path: str | None, run_id: str) -> dict | None:
    record = process_record.read(metadata_path, run_id) if metadata_path else None
    if record is None:
        return None
    return {"pid": record.get("pid"), "host": record.get("host"), "state": process_record.state(record),
            "outcome": record.get("outcome"), "ended_at": record.get("ended_at")}


def _status(run: _Run, process: dict | None) -> tuple[str, bool]:
    """(run status, whether its unfinished executions were interrupted)."""
    # Graphs change between runs (components added or renamed): a run is complete when nothing
    # failed or is still running and its last stage, the pusher (whatever produced a PushedModel,
    # pushed or not), finished.
    states = {_STATE.get(e.last_known_state, "unknown") for e in run.executions}
    if states & {"failed", "canceled"}:
        return "failed", False
    if states & {"running", "new"}:
        # ML Metadata keeps a killed run's component RUNNING forever: ask whether its process lives
        if process is not None and process["state"] == process_record.GONE:
            return ("failed" if process["outcome"] == "failed" else "interrupted"), True
        return "running", False
    if run.outputs("PushedModel") and states <= {"complete", "cached"}:
        return "complete", False
    return "incomplete", False


def _execution_state(e, interrupted: bool) -> str:
    state = _STATE.get(e.last_known_state, "unknown")
    return "interrupted" if interrupted and state in ("running", "new") else state


def _summarize(run: _Run, all_nodes: list[str], metadata_path: str | None = None) -> RunSummary:
    process = _process(metadata_path, run.ctx.name)
    status, interrupted = _status(run, process)
    components = {n: NOT_RUN for n in all_nodes}
    for e in run.executions:
        components[run.node(e.id)] = _execution_state(e, interrupted)
    pushed = run.outputs("PushedModel")
    start = min((e.create_time_since_epoch for e in run.executions), default=run.ctx.create_time_since_epoch)
    end = max((e.last_update_time_since_epoch for e in run.executions), default=None) if status != "running" else None

    examples = [a for node, a in run.outputs("Examples") if node.endswith("ExampleGen")]
    blessed = None
    blessing = []
    if pushed:  # the blessing the pusher acted on
        pusher_exec = [ev.execution_id for ev in run.events if ev.artifact_id == pushed[-1][1].id
                       and ev.type == metadata_store_pb2.Event.OUTPUT]
        if pusher_exec:
            blessing = run.inputs_of(pusher_exec[0], "model_blessing")
    if not blessing:  # no pusher ran: the last blessing produced
        blessing = [a for _, a in run.outputs("ModelBlessing")][-1:]
    if blessing:
        blessed = _int(blessing[-1], "blessed") == 1
    version = to = None
    if pushed and _int(pushed[-1][1], "pushed") == 1:
        art = pushed[-1][1]
        to = _str(art, "pushed_destination")
        version = _str(art, "pushed_version") or (os.path.basename(to.rstrip("/")) if to else None)
    return RunSummary(run_id=run.ctx.name, start=_iso(start), end=_iso(end), status=status,
                      components=components, data_fingerprint=_fingerprint(examples[0].uri if examples else None),
                      blessed=blessed, pushed_version=version, pushed_to=to, process=process)


def list_runs(metadata_path: str, pipeline_name: str, pipeline_root: str) -> list[RunSummary]:
    """Every run of the pipeline in this ML Metadata database, newest first."""
    store = open_store(metadata_path)
    node_of, all_nodes = _node_of_execution(store, pipeline_name)
    ctxs = sorted(_run_contexts(store, pipeline_name), key=lambda c: (c.create_time_since_epoch, c.id), reverse=True)
    return [_summarize(_Run(store, c, pipeline_root, node_of), all_nodes, metadata_path) for c in ctxs]


def run_status(store, metadata_path: str, pipeline_name: str, pipeline_root: str, ctx) -> str:
    """One run's status (as `runs` shows it), for the report."""
    node_of, all_nodes = _node_of_execution(store, pipeline_name)
    return _summarize(_Run(store, ctx, pipeline_root, node_of), all_nodes, metadata_path).status


def partial_outputs(metadata_path: str, pipeline_name: str, pipeline_root: str) -> list[str]:
    """Output folders of executions that will never finish: FAILED ones, and RUNNING ones of runs
    whose process is gone. TFX creates `<root>/<component>/<output>/<execution id>/` (and
    `.system/executor_execution/<id>/`) before running a component but registers the artifacts in
    ML Metadata only when it succeeds, so no reader (runs, report, curate, the cache) ever sees these
    folders; they are only disk space and confusion. A folder that ML Metadata knows as an artifact
    is never listed."""
    if not os.path.exists(metadata_path) or pipeline_root.startswith("gs://"):
        return []
    store = open_store(metadata_path)
    node_of, _ = _node_of_execution(store, pipeline_name)
    known = {os.path.normpath(a.uri) for a in store.get_artifacts()}
    out = []
    for ctx in _run_contexts(store, pipeline_name):
        run = _Run(store, ctx, pipeline_root, node_of)
        _, interrupted = _status(run, _process(metadata_path, ctx.name))
        for e in run.executions:
            state = _STATE.get(e.last_known_state)
            if not (state == "failed" or (interrupted and state in ("running", "new"))) or e.id not in node_of:
                continue
            node_dir = os.path.join(pipeline_root, node_of[e.id])
            keys = [k for k in (os.listdir(node_dir) if os.path.isdir(node_dir) else []) if not k.startswith(".")]
            for d in [os.path.join(node_dir, k, str(e.id)) for k in keys] + [
                    os.path.join(node_dir, ".system", "executor_execution", str(e.id))]:
                if os.path.isdir(d) and os.path.normpath(d) not in known:
                    out.append(d)
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
    store = open_store(metadata_path)
    ctx = store.get_context_by_type_and_name("pipeline_run", run_id)
    if ctx is None:
        known = [c.name for c in _run_contexts(store, pipeline_name)]
        hint = f" (latest: {max(known)})" if known else " (no runs yet)"
        raise LookupError(f"run {run_id!r} not found in {metadata_path}{hint}")
    node_of, all_nodes = _node_of_execution(store, pipeline_name)
    run = _Run(store, ctx, pipeline_root, node_of)
    summary = _summarize(run, all_nodes, metadata_path)
    _, interrupted = _status(run, summary.process)
    report = run_report(metadata_path, pipeline_name, pipeline_root, run_id)

    def where(a) -> str:
        return _component_of(a.uri, pipeline_root) if a.uri.startswith(pipeline_root.rstrip("/") + "/") else a.uri

    steps = []
    for e in run.executions:
        ins = sorted(f"{where(run.artifacts[ev.artifact_id])}" for ev in run.events
                     if ev.execution_id == e.id and ev.type == metadata_store_pb2.Event.INPUT
                     and ev.artifact_id in run.artifacts)
        outs = sorted(f"{run.key(ev)}: {run.artifacts[ev.artifact_id].uri}" for ev in run.events
                      if ev.execution_id == e.id and ev.type == metadata_store_pb2.Event.OUTPUT
                      and ev.artifact_id in run.artifacts)
        steps.append({"component": run.node(e.id), "state": _execution_state(e, interrupted),
                      "start": _iso(e.create_time_since_epoch), "end": _iso(e.last_update_time_since_epoch),
                      "inputs": ins, "outputs": outs})
    examples = [(n, a) for n, a in run.outputs("Examples") if n.endswith("ExampleGen")]
    models = [{"component": n, "uri": a.uri} for n, a in run.outputs("Model")]
    evaluations = [{"component": n, "uri": a.uri} for n, a in run.outputs("ModelEvaluation")]
    blessings = [{"component": n, "uri": a.uri, "blessed": _int(a, "blessed") == 1,
                  "model": _str(a, "current_model"), "baseline": _str(a, "baseline_model")}
                 for n, a in run.outputs("ModelBlessing")]
    return {
        "run_id": run_id, "status": summary.status, "start": summary.start, "end": summary.end,
        "process": summary.process,
        "data": {"examples": examples[0][1].uri if examples else None,
                 "ingest_summary": os.path.join(examples[0][1].uri, INGEST_SUMMARY) if examples else None,
                 "fingerprint": summary.data_fingerprint, "ingest": report.ingest},
        "models": models,
        "evaluation": {"artifacts": evaluations, "metrics": report.metrics, "blessings": blessings,
                       "blessed": summary.blessed, "reasons": report.validation_failures},
        "registry": {"pushed": summary.pushed_version is not None, "version": summary.pushed_version,
                     "destination": summary.pushed_to},
        "steps": steps,
    }


def to_json(obj) -> str:
    if dataclasses.is_dataclass(obj):
        obj = dataclasses.asdict(obj)
    elif isinstance(obj, list):
        obj = [dataclasses.asdict(o) if dataclasses.is_dataclass(o) else o for o in obj]
    return json.dumps(obj, indent=2, sort_keys=True)
