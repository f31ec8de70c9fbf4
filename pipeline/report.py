"""What a pipeline run produced, read back from ML Metadata and the artifacts themselves."""
from __future__ import annotations

import dataclasses
import json
import os

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components.evaluator.eval_config import BASELINE, CANDIDATE

REPORT_METRICS = ("example_count", "binary_accuracy", "auc", "auc_pr", "precision", "recall", "f1_score")


@dataclasses.dataclass
class RunReport:
    run_id: str
    artifacts: dict[str, str]          # "<component>.<output>" -> uri
    ingest: dict | None = None         # ingest_summary.json
    metrics: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # model -> metric -> value
    blessed: bool | None = None
    validation_failures: list[str] = dataclasses.field(default_factory=list)
    pushed_to: str | None = None
    anomalies: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
    if not os.path.exists(metadata_path):
        raise FileNotFoundError(f"no ML Metadata database at {metadata_path!r} (has the pipeline run yet?)")
    cfg = metadata_store_pb2.ConnectionConfig()
    cfg.sqlite.filename_uri = metadata_path
    cfg.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(cfg)


def latest_run_id(store, pipeline_name: str) -> str:
    runs = [c for c in store.get_contexts_by_type("pipeline_run")]
    pipeline_ctx = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline_ctx is not None:
        in_pipeline = {c.id for c in store.get_children_contexts_by_context(pipeline_ctx.id)} if hasattr(
            store, "get_children_contexts_by_context") else set()
        runs = [c for c in runs if not in_pipeline or c.id in in_pipeline] or runs
    if not runs:
        raise LookupError(f"no runs of pipeline {pipeline_name!r} in ML Metadata")
    return max(runs, key=lambda c: (c.create_time_since_epoch, c.id)).name


def _component_of(uri: str, pipeline_root: str) -> str:
    rel = os.path.relpath(uri, pipeline_root)
    parts = rel.split(os.sep)
    return f"{parts[0]}.{parts[1]}" if len(parts) > 1 else parts[0]


def _evaluation(report: RunReport, uri: str) -> None:
    import tensorflow_model_analysis as tfma

    from pipeline.logs import route_library_logs
    route_library_logs(None)
    for model in (CANDIDATE, BASELINE):
        try:
            result = tfma.load_eval_result(uri, model_name=model)
        except Exception:  # noqa: BLE001 - a failed evaluator leaves no metrics; reported as missing
            continue
        for slice_key, metrics in result.slicing_metrics:
            if slice_key == ():
                values = metrics.get("", {}).get("", {})
                report.metrics[model] = {k: float(next(iter(v.values()))) for k, v in values.items()
                                         if k in REPORT_METRICS and isinstance(v, dict)}
    try:
        validation = tfma.load_validation_result(uri)
    except Exception:  # noqa: BLE001
        return
    report.blessed = bool(validation.validation_ok)
    for per_slice in validation.metric_validations_per_slice:
        where = ",".join(f"{k.column}={k.bytes_value.decode() or k.int64_value or k.float_value}"
                         for k in per_slice.slice_key.single_slice_keys)
        for f in per_slice.failures:
            report.validation_failures.append(_failure_text(f, where))


def _failure_text(f, where: str) -> str:
    t = f.metric_threshold
    if f.metric_key.is_diff:
        bound, what = t.change_threshold.absolute.value, f"{f.metric_key.name} gain over baseline"
    else:
        bound, what = t.value_threshold.lower_bound.value, f.metric_key.name
    value = f.metric_value.double_value.value
    return f"{what} = {value:.3f} < {bound:g}" + (f" on slice {where}" if where else "") + \
        (f" ({f.message})" if f.message else "")


def run_report(metadata_path: str, pipeline_name: str, pipeline_root: str, run_id: str | None = None) -> RunReport:
    store = open_store(metadata_path)
    run_id = run_id or latest_run_id(store, pipeline_name)
    ctx = store.get_context_by_type_and_name("pipeline_run", run_id)
    if ctx is None:
        raise LookupError(f"run {run_id!r} not found in ML Metadata")
    report = RunReport(run_id=run_id, artifacts={})
    for art in store.get_artifacts_by_context(ctx.id):
        if art.state != metadata_store_pb2.Artifact.LIVE:
            continue
        key = _component_of(art.uri, pipeline_root)
        report.artifacts[key] = art.uri
        props = art.custom_properties
        if key == "ImageExampleGen.examples":
            path = os.path.join(art.uri, "ingest_summary.json")
            if os.path.exists(path):
                with open(path) as f:
                    report.ingest = json.load(f)
        elif key == "Evaluator.evaluation":
            _evaluation(report, art.uri)
        elif key == "Pusher.pushed_model" and props.get("pushed") and props["pushed"].int_value == 1:
            report.pushed_to = props["pushed_destination"].string_value
        elif key == "ExampleValidator.anomalies":
            report.anomalies = _anomalies(art.uri)
    return report


def _anomalies(uri: str) -> list[str]:
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    out = []
    for root, _, files in os.walk(uri):
        for name in files:
            if name.startswith("SchemaDiff"):
                a = anomalies_pb2.Anomalies()
                with open(os.path.join(root, name), "rb") as f:
                    a.ParseFromString(f.read())
                split = os.path.basename(root).removeprefix("Split-")
                out += [f"{split}/{feat}: {info.short_description}" for feat, info in a.anomaly_info.items()]
    return out
