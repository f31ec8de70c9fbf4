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
    ExampleValidator.anomalies   components/validation/anomalies.py (SchemaDiff.pb per split)
    ReleaseCheck.check           components/release_check/check.py (release_check.json, scores.json)
    ReleaseCheck.blessing        components/release_check/blessing.py (`blessed`, BLESSED / NOT_BLESSED)
    RegistryPusher.pushed_model  components/registry/pushed.py (pushed, pushed_version, duplicate_of, ...)
`RunOutputs` puts all of them behind one object; report, runs, curate and the benchmarks use it, and
`RunOutputs.verdict()` is the one reading of a run's release decision (report, runs, runs show, the
summary at the end of `synthdetect run`, a Vertex AI job read back in pipeline/vertex.py).

Missing data, one rule: a reader returns None (or an empty verdict) when the run did not produce the
output; when it did but its files are gone or damaged, it raises `OutputUnreadable` (one line, which
the CLI prints as `error: ...`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline.pipeline import (ANOMALIES, BASELINE_TRAINER, BLESSING, CANDIDATE_TRAINER, CHECK, EVALUATION,
                               EVALUATOR, EXAMPLE_GEN, EXAMPLE_VALIDATOR, EXAMPLES, MODEL, PUSHED_MODEL, PUSHER,
                               RELEASE_CHECK)

STATE = {metadata_store_pb2.Execution.NEW: "new", metadata_store_pb2.Execution.RUNNING: "running",
         metadata_store_pb2.Execution.COMPLETE: "complete", metadata_store_pb2.Execution.FAILED: "failed",
         metadata_store_pb2.Execution.CACHED: "cached", metadata_store_pb2.Execution.CANCELED: "canceled"}
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
TRAINERS = {"candidate": CANDIDATE_TRAINER, "baseline": BASELINE_TRAINER}
T = TypeVar("T")


class OutputUnreadable(Exception):
    """A run's output exists (ML Metadata records it) but what is in it cannot be read: its files are
    gone or damaged. The message is one line naming the output, where it is and why."""

    def __init__(self, run_id: str, name: str, uri: str, why: str):
        super().__init__(f"run {run_id}: output {name} at {uri} cannot be read: {why}")
        self.run_id, self.name, self.uri = run_id, name, uri


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


def properties(artifact) -> dict[str, int | float | str]:
    """An artifact's custom properties as a plain mapping (what a Vertex AI job's artifact metadata is)."""
    out: dict[str, int | float | str] = {}
    for name, value in artifact.custom_properties.items():
        kind = value.WhichOneof("value")
        if kind in ("int_value", "double_value", "string_value", "bool_value"):
            out[name] = getattr(value, kind)
    return out


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
        live = [(output_name(self.node(ev.execution_id), self.key(ev)), a) for ev, a in self._produced()
                if a.state == metadata_store_pb2.Artifact.LIVE]
        return RunOutputs(self.run_id, {name: a.uri for name, a in live},
                          {name: properties(a) for name, a in live})


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
    """A run's release decision, read one way for every reader (`RunOutputs.verdict`)."""
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
    pushed_version: str | None = None  # None: not pushed
    pushed_to: str | None = None       # where the pushed version is
    duplicate_of: str | None = None    # blessed, not pushed: the registry's version of the same model


def _read_errors() -> tuple[type[BaseException], ...]:
    """What readers raise for a file that is gone or damaged (TensorFlow's only when it is loaded)."""
    from google.protobuf.message import DecodeError
    tf = sys.modules.get("tensorflow")
    return (OSError, ValueError, EOFError, DecodeError) + ((tf.errors.OpError,) if tf is not None else ())


def _int(value) -> int | None:
    return int(float(value)) if value not in (None, "") else None


@dataclasses.dataclass
class RunOutputs:
    """One run's outputs ("<component>.<key>" -> URI, and each one's custom properties) and what is in
    them. Also built by hand from URIs (tests, `curate --examples`), or from a Vertex AI job's artifact
    metadata alone (no URIs: nothing is read from files)."""
    run_id: str
    uris: dict[str, str]
    properties: dict[str, dict] = dataclasses.field(default_factory=dict)

    @classmethod
    def of_examples(cls, examples_uri: str) -> RunOutputs:
        """An ingestion output folder on its own (`synthdetect ingest --output`)."""
        return cls(f"ingest:{examples_uri}", {output_name(EXAMPLE_GEN, EXAMPLES): examples_uri})

    def uri(self, component: str, key: str) -> str | None:
        return self.uris.get(output_name(component, key))

    def _read(self, component: str, key: str, read: Callable[[str], T | None]) -> T | None:
        """`read(uri)` of an output: None when the run did not produce it; OutputUnreadable when it did
        but `read` fails or finds nothing (returns None)."""
        uri = self.uri(component, key)
        if not uri:
            return None
        try:
            value = read(uri)
        except _read_errors() as e:
            why = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"[:300]
            raise OutputUnreadable(self.run_id, output_name(component, key), uri, why) from None
        if value is None:
            raise OutputUnreadable(self.run_id, output_name(component, key), uri, "its files are missing")
        return value

    @property
    def examples(self) -> str | None:
        return self.uri(EXAMPLE_GEN, EXAMPLES)

    def model(self, trainer: str = CANDIDATE_TRAINER) -> str | None:
        """A Trainer's model artifact URI."""
        return self.uri(trainer, MODEL)

    def ingest_summary(self) -> dict | None:
        from components.ingest import outputs
        return self._read(EXAMPLE_GEN, EXAMPLES, lambda uri: json.loads(outputs.summary_bytes(uri)))

    def data_fingerprint(self) -> str | None:
        from components.ingest import outputs
        return self._read(EXAMPLE_GEN, EXAMPLES, outputs.fingerprint)

    def serving_model(self, trainer: str = CANDIDATE_TRAINER) -> str | None:
        from components.trainer.artifact import serving_model_dir
        uri = self.model(trainer)
        return serving_model_dir(uri) if uri else None

    def training(self, trainer: str = CANDIDATE_TRAINER) -> dict | None:
        """The whole training_history.json of a Trainer's model: history, best_epoch,
        resumed_after_epoch, stopped_early, config; None when the run trained no such model."""
        from components.trainer.artifact import read_history
        return self._read(trainer, MODEL, read_history)

    def history(self, trainer: str = CANDIDATE_TRAINER) -> dict | None:
        """Per-epoch training metrics of a Trainer's model ({"loss": [...], ...}), or None."""
        return (self.training(trainer) or {}).get("history")

    def release_check(self) -> dict | None:
        from components.release_check.check import load_check
        return self._read(RELEASE_CHECK, CHECK, load_check)

    def release_scores(self) -> dict | None:
        from components.release_check.check import load_scores
        return self._read(RELEASE_CHECK, CHECK, load_scores)

    def calibrated_threshold(self, role: str = "candidate") -> float | None:
        """A model's threshold from the run's release check, if the run got that far."""
        from components.release_check.check import calibrated_threshold
        return calibrated_threshold(self.release_check(), role)

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

    def anomalies(self) -> list[str]:
        """ExampleValidator's anomalies, "<split>/<feature>: <description>"; [] without its output."""
        from components.validation.anomalies import read_anomalies
        return self._read(EXAMPLE_VALIDATOR, ANOMALIES, read_anomalies) or []

    def blessing(self, component: str = RELEASE_CHECK) -> tuple[bool, list[str]] | None:
        """A `blessing` output's decision (its `blessed` property) and, for the release check's, the
        reasons in its marker file; None when the run has none or it decided nothing yet (a Vertex AI
        task still running)."""
        from components.release_check.blessing import BLESSED_PROPERTY, read_reasons
        blessed = _int(self.properties.get(output_name(component, BLESSING), {}).get(BLESSED_PROPERTY))
        if blessed is None:
            return None
        reasons = self._read(component, BLESSING, lambda uri: read_reasons(uri, blessed == 1)) \
            if component == RELEASE_CHECK else None
        return blessed == 1, reasons or []

    def verdict(self, figures: bool = True) -> Verdict:
        """The run's release decision, the one reading of it:
          blessed    the release check's decision; a run without one (it stopped before) has TFMA's
                     (the Evaluator's blessing); None when neither decided (not evaluated)
          reasons    the release check's reasons, blessed or not; failures: why not blessed
          pushed_version, pushed_to, duplicate_of: what the RegistryPusher did
        With `figures` (report, runs show) also the figures behind it, from release_check.json and
        TFMA's evaluation, the decision then read from the check (the component writes the same into
        its blessing); without (runs, Vertex AI jobs) only the blessing and pusher artifacts are read."""
        from components.registry.pushed import push_result
        push = push_result(self.properties.get(output_name(PUSHER, PUSHED_MODEL), {}))
        v = Verdict(pushed_version=push.version, pushed_to=push.destination, duplicate_of=push.duplicate_of)
        check = self.release_check() if figures else None
        if check is not None:
            v.blessed, v.reasons = bool(check["blessed"]), check["reasons"]
            v.failures = [] if v.blessed else v.reasons
            v.calibration, v.robustness = check["calibration"], check["robustness"]
            from components.release_check.check import holdout_summary
            v.holdout = holdout_summary(check)
            v.production = {k: x for k, x in (check.get("production") or {}).items() if k not in ("slices", "holdout")}
        elif (final := self.blessing(RELEASE_CHECK)) is not None:
            v.blessed, v.reasons = final
            v.failures = [] if v.blessed else v.reasons
        tfma = self.evaluation() if figures else None
        if tfma is not None:
            v.metrics = dict(tfma.metrics)
            if v.blessed is None and tfma.validation_ok is not None:
                v.blessed, v.failures = tfma.validation_ok, tfma.failures
        elif v.blessed is None and (first := self.blessing(EVALUATOR)) is not None:
            v.blessed = first[0]    # TFMA's failures are in its evaluation: read with figures
        if v.production.get("compared"):   # a third row beside candidate and baseline
            v.metrics["production"] = v.production.get("metrics", {}).get("production", {})
        return v
