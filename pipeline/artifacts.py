"""Where a pipeline run's outputs are, read back from ML Metadata: the one place that finds them.

A run is a `pipeline_run` context. Each component's executions belong to a `node` context named
`<pipeline>.<component id>`, and each output artifact hangs off its execution by an OUTPUT event
whose key is the output's name, also for cached executions (they point at the artifacts they
reuse). So an output is found by (component id, output key), both defined in pipeline/pipeline.py,
never by parsing paths under pipeline_root.

What is inside an artifact is read by the module of the component that wrote it:
    ImageExampleGen.examples     components/ingest/outputs.py (ingest_summary.json, members, shards)
    Trainer_*.model              components/trainer/artifact.py (the SavedModel, training history)
    Evaluator.evaluation         components/evaluator/results.py (TFMA metrics and validation)
    ReleaseCheck.check           components/release_check/check.py (release_check.json, scores.json)
    RegistryPusher.pushed_model  its custom properties (pushed, pushed_version, pushed_destination)
`RunOutputs` puts all of them behind one object; report, runs, curate and the benchmarks use it.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline.pipeline import (ANOMALIES, BASELINE_TRAINER, CANDIDATE_TRAINER, CHECK, EVALUATION, EVALUATOR,
                               EXAMPLE_GEN, EXAMPLE_VALIDATOR, EXAMPLES, MODEL, PUSHED_MODEL, PUSHER, RELEASE_CHECK)

STATE = {metadata_store_pb2.Execution.NEW: "new", metadata_store_pb2.Execution.RUNNING: "running",
         metadata_store_pb2.Execution.COMPLETE: "complete", metadata_store_pb2.Execution.FAILED: "failed",
         metadata_store_pb2.Execution.CACHED: "cached", metadata_store_pb2.Execution.CANCELED: "canceled"}
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
TRAINERS = {"candidate": CANDIDATE_TRAINER, "baseline": BASELINE_TRAINER}


def output_name(component: str, key: str) -> str:
    """How an output is named in reports: "<component id>.<output key>"."""
    return f"{component}.{key}"


# ------------------------------------------------------------------------------------ ML Metadata
def open_store(metadata_path: str) -> metadata_store.MetadataStore:
    if not os.path.exists(metadata_path):
        raise FileNotFoundError(f"no ML Metadata database at {metadata_path!r} (has the pipeline run yet?)")
    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = metadata_path
    cfg.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(cfg)


def run_contexts(store, pipeline_name: str) -> list:
    """The `pipeline_run` contexts with executions of this pipeline."""
    pipeline_ctx = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_ctx is None:
        return []
    in_pipeline = {e.id for e in store.get_executions_by_context(pipeline_ctx.id)}
    return [r for r in store.get_contexts_by_type("pipeline_run")
            if any(e.id in in_pipeline for e in store.get_executions_by_context(r.id))]


def find_run(store, metadata_path: str, pipeline_name: str, run_id: str | None = None):
    """The context of run `run_id` (None or "latest": the newest run), or LookupError."""
    runs = run_contexts(store, pipeline_name)
    if run_id in (None, "", "latest"):
        if not runs:
            raise LookupError(f"no runs of pipeline {pipeline_name!r} in ML Metadata")
        return max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    ctx = store.get_context_by_type_and_name("pipeline_run", run_id)
    if ctx is None:
        hint = f" (latest: {max(c.name for c in runs)})" if runs else " (no runs yet)"
        raise LookupError(f"run {run_id!r} not found in {metadata_path}{hint}")
    return ctx


def node_of_execution(store, pipeline_name: str) -> tuple[dict[int, str], list[str]]:
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
    return node_of, sorted(first_seen, key=lambda n: first_seen[n])


def custom_int(artifact, name: str) -> int | None:
    p = artifact.custom_properties.get(name)
    return p.int_value if p is not None else None


def custom_str(artifact, name: str) -> str | None:
    p = artifact.custom_properties.get(name)
    return p.string_value if p is not None and p.string_value else None


def pushed_to(artifact) -> tuple[str | None, str | None] | None:
    """(version, destination) of a PushedModel artifact that was pushed, else None."""
    if custom_int(artifact, "pushed") != 1:
        return None
    to = custom_str(artifact, "pushed_destination")
    return custom_str(artifact, "pushed_version") or (os.path.basename(to.rstrip("/")) if to else None), to


class RunRecord:
    """The ML Metadata records of one run: its executions, the artifacts they read and wrote, and
    the events between them."""

    def __init__(self, store, ctx, node_of: dict[int, str]):
        self.ctx = ctx
        self.run_id = ctx.name
        self.executions = sorted(store.get_executions_by_context(ctx.id), key=lambda e: e.id)
        self.node_of = node_of
        ids = [e.id for e in self.executions]
        self.events = store.get_events_by_execution_ids(ids) if ids else []
        art_ids = sorted({ev.artifact_id for ev in self.events})
        self.artifacts = {a.id: a for a in (store.get_artifacts_by_id(art_ids) if art_ids else [])}
        self.type_name = {t.id: t.name for t in store.get_artifact_types()}

    @classmethod
    def load(cls, metadata_path: str, pipeline_name: str, run_id: str | None = None) -> RunRecord:
        store = open_store(metadata_path)
        ctx = find_run(store, metadata_path, pipeline_name, run_id)
        return cls(store, ctx, node_of_execution(store, pipeline_name)[0])

    def node(self, execution_id: int) -> str:
        return self.node_of.get(execution_id, f"execution {execution_id}")

    @staticmethod
    def is_output(event) -> bool:
        return event.type in _OUTPUT_EVENTS

    @staticmethod
    def key(event) -> str:
        return event.path.steps[0].key if event.path.steps else ""

    def state(self, execution) -> str:
        return STATE.get(execution.last_known_state, "unknown")

    def _produced(self):
        """(event, artifact) for every artifact an execution of this run produced or reused."""
        for ev in self.events:
            a = self.artifacts.get(ev.artifact_id)
            if a is not None and ev.type in _OUTPUT_EVENTS:
                yield ev, a

    def outputs_of_type(self, type_name: str) -> list[tuple[str, Any]]:
        """(component id, artifact) for artifacts of an MLMD type produced (or reused) in this run."""
        return [(self.node(ev.execution_id), a) for ev, a in self._produced()
                if self.type_name.get(a.type_id) == type_name]

    def output(self, component: str, key: str):
        """The live artifact `component` wrote (or reused) under `key` in this run, or None."""
        found = [a for ev, a in self._produced() if self.node(ev.execution_id) == component and self.key(ev) == key
                 and a.state == metadata_store_pb2.Artifact.LIVE]
        return found[-1] if found else None

    def name_of(self, artifact_id: int) -> str | None:
        """"<component>.<key>" of the output an artifact is in this run, or None."""
        for ev, _ in self._produced():
            if ev.artifact_id == artifact_id:
                return output_name(self.node(ev.execution_id), self.key(ev))
        return None

    def inputs_of(self, execution_id: int, key: str | None = None) -> list:
        return [self.artifacts[ev.artifact_id] for ev in self.events
                if ev.execution_id == execution_id and ev.type == metadata_store_pb2.Event.INPUT
                and (key is None or self.key(ev) == key) and ev.artifact_id in self.artifacts]

    def outputs_of(self, execution_id: int) -> list[tuple[str, Any]]:
        return [(self.key(ev), a) for ev, a in self._produced()
                if ev.execution_id == execution_id and ev.type == metadata_store_pb2.Event.OUTPUT]

    def outputs(self) -> RunOutputs:
        uris = {output_name(self.node(ev.execution_id), self.key(ev)): a.uri for ev, a in self._produced()
                if a.state == metadata_store_pb2.Artifact.LIVE}
        pushed = self.output(PUSHER, PUSHED_MODEL)
        return RunOutputs(self.run_id, uris, pushed_to(pushed) if pushed is not None else None,
                          duplicate_of=(custom_str(pushed, "duplicate_of") or None) if pushed is not None else None)


def unregistered_output_dirs(pipeline_root: str, component: str, execution_id: int) -> list[str]:
    """The folders TFX creates for an execution before it runs (`<root>/<component>/<output key>/<id>/`
    and `.system/executor_execution/<id>/`); ML Metadata learns of them only when it succeeds."""
    node_dir = os.path.join(pipeline_root, component)
    keys = [k for k in (os.listdir(node_dir) if os.path.isdir(node_dir) else []) if not k.startswith(".")]
    return [d for d in [os.path.join(node_dir, k, str(execution_id)) for k in keys]
            + [os.path.join(node_dir, ".system", "executor_execution", str(execution_id))] if os.path.isdir(d)]


# ------------------------------------------------------------------------------------ contents
@dataclasses.dataclass
class Verdict:
    """What the gate decided: the release check's blessing, or TFMA's when there is no check."""
    metrics: dict = dataclasses.field(default_factory=dict)       # model -> metric -> value (eval split)
    blessed: bool | None = None                                   # None: not evaluated
    failures: list[str] = dataclasses.field(default_factory=list)  # why not blessed
    reasons: list[str] = dataclasses.field(default_factory=list)   # the release check's reasons either way
    calibration: dict = dataclasses.field(default_factory=dict)    # model -> calibrated threshold, TPR/FPR
    robustness: dict = dataclasses.field(default_factory=dict)     # candidate under perturbations
    holdout: dict = dataclasses.field(default_factory=dict)        # held-out set -> model -> figures (no ROC)
    # the model serving when the run was gated: {"compared": False, "reason"} or {"compared": True,
    # "version", "registry", "validation_ok", "metrics": {candidate, production}} (no slices)
    production: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class RunOutputs:
    """One run's outputs ("<component>.<key>" -> URI) and what is in them. Also built by hand from
    URIs (tests, `curate --examples`)."""
    run_id: str
    uris: dict[str, str]
    pushed: tuple[str | None, str | None] | None = None   # (version, destination) when the pusher pushed
    duplicate_of: str | None = None                # the registry version an identical rerun was not pushed over

    @classmethod
    def of_examples(cls, examples_uri: str) -> RunOutputs:
        """An ingestion output folder on its own (`synthdetect ingest --output`)."""
        return cls(f"ingest:{examples_uri}", {output_name(EXAMPLE_GEN, EXAMPLES): examples_uri})

    def uri(self, component: str, key: str) -> str | None:
        return self.uris.get(output_name(component, key))

    @property
    def examples(self) -> str | None:
        return self.uri(EXAMPLE_GEN, EXAMPLES)

    def model(self, trainer: str = CANDIDATE_TRAINER) -> str | None:
        """A Trainer's model artifact URI."""
        return self.uri(trainer, MODEL)

    def ingest_summary(self) -> dict | None:
        from components.ingest import outputs
        if not self.examples:
            return None
        try:
            return json.loads(outputs.summary_bytes(self.examples))
        except FileNotFoundError:
            return None

    def data_fingerprint(self) -> str | None:
        from components.ingest import outputs
        try:
            return outputs.fingerprint(self.examples) if self.examples else None
        except Exception:  # noqa: BLE001 - a missing or unreadable summary is shown as no fingerprint
            return None

    def serving_model(self, trainer: str = CANDIDATE_TRAINER) -> str | None:
        from components.trainer.artifact import serving_model_dir
        uri = self.model(trainer)
        return serving_model_dir(uri) if uri else None

    def history(self, trainer: str = CANDIDATE_TRAINER) -> dict | None:
        """Per-epoch training metrics of a Trainer's model ({"loss": [...], ...}), or None."""
        from components.trainer.artifact import read_history
        uri = self.model(trainer)
        return (read_history(uri) or {}).get("history") if uri else None

    def training(self, trainer: str = CANDIDATE_TRAINER) -> dict | None:
        """The whole training_history.json of a Trainer's model: history, best_epoch,
        resumed_after_epoch, stopped_early, config; None without one."""
        from components.trainer.artifact import read_history
        uri = self.model(trainer)
        return read_history(uri) if uri else None

    def release_check(self) -> dict | None:
        from components.release_check.check import load_check
        uri = self.uri(RELEASE_CHECK, CHECK)
        return load_check(uri) if uri else None

    def release_scores(self) -> dict | None:
        from components.release_check.check import load_scores
        uri = self.uri(RELEASE_CHECK, CHECK)
        return load_scores(uri) if uri else None

    def calibrated_threshold(self, role: str = "candidate") -> float | None:
        """A model's threshold from the run's release check, if the run got that far."""
        from components.release_check.check import calibrated_threshold
        try:
            return calibrated_threshold(self.release_check(), role)
        except (OSError, ValueError):
            return None

    def resolved_model(self, role: str = "candidate"):
        """The run's candidate (or baseline) as `components.scoring.models` resolves a model, with the
        run's calibrated threshold; None when the run trained none."""
        from components.scoring.models import resolve_model
        uri = self.model(TRAINERS[role])
        if not uri:
            return None
        model = resolve_model(uri)
        threshold = self.calibrated_threshold(role)
        return dataclasses.replace(model, threshold=threshold) if threshold is not None else model

    def evaluation(self):
        """TFMA's metrics and validation (components.evaluator.results.TfmaResult), or None."""
        uri = self.uri(EVALUATOR, EVALUATION)
        if not uri:
            return None
        from components.evaluator import results
        from pipeline.logs import route_library_logs
        route_library_logs(None)
        return results.load(uri)

    def verdict(self) -> Verdict:
        v = Verdict()
        check = self.release_check()
        if check is not None:
            v.blessed = bool(check["blessed"])
            v.failures = [] if check["blessed"] else check["reasons"]
            v.reasons, v.calibration, v.robustness = check["reasons"], check["calibration"], check["robustness"]
            from components.release_check.check import holdout_summary
            v.holdout = holdout_summary(check)
            v.production = {k: x for k, x in (check.get("production") or {}).items() if k not in ("slices", "holdout")}
        tfma = self.evaluation()
        if tfma is not None:
            v.metrics = dict(tfma.metrics)
            if v.blessed is None and tfma.validation_ok is not None:
                v.blessed, v.failures = tfma.validation_ok, tfma.failures
        if v.production.get("compared"):   # a third row beside candidate and baseline
            v.metrics["production"] = v.production.get("metrics", {}).get("production", {})
        return v

    def anomalies(self) -> list[str]:
        """ExampleValidator's anomalies, "<split>/<feature>: <description>"."""
        from tensorflow_metadata.proto.v0 import anomalies_pb2
        uri = self.uri(EXAMPLE_VALIDATOR, ANOMALIES)
        out = []
        for root, _, files in os.walk(uri) if uri else ():
            for name in files:
                if name.startswith("SchemaDiff"):
                    a = anomalies_pb2.Anomalies()
                    with open(os.path.join(root, name), "rb") as f:
                        a.ParseFromString(f.read())
                    split = os.path.basename(root).removeprefix("Split-")
                    out += [f"{split}/{feat}: {info.short_description}" for feat, info in a.anomaly_info.items()]
        return out
