"""What a pipeline run produced, read back from ML Metadata and the artifacts themselves."""
from __future__ import annotations

import dataclasses
import json
import os

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components.evaluator.results import REPORT_METRICS  # noqa: F401 - re-exported


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
    blessing_reasons: list[str] = dataclasses.field(default_factory=list)  # why (not) blessed
    calibration: dict = dataclasses.field(default_factory=dict)  # model -> calibrated threshold, TPR/FPR
    robustness: dict = dataclasses.field(default_factory=dict)   # candidate under perturbations
    pushed_version: str | None = None

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
    from components.evaluator import results
    from pipeline.logs import route_library_logs
    route_library_logs(None)
    tfma = results.load(uri)
    report.metrics = tfma.metrics
    if report.blessed is None and tfma.validation_ok is not None:  # the release check's verdict wins
        report.blessed = tfma.validation_ok
        report.validation_failures = tfma.failures


def _release_check(report: RunReport, uri: str) -> None:
    from components.robustness.check import load_check
    check = load_check(uri)
    if check is None:
        return
    report.blessed = bool(check["blessed"])
    report.validation_failures = [] if check["blessed"] else check["reasons"]
    report.blessing_reasons = check["reasons"]
    report.calibration = check["calibration"]
    report.robustness = check["robustness"]


def run_report(metadata_path: str, pipeline_name: str, pipeline_root: str, run_id: str | None = None) -> RunReport:
    store = open_store(metadata_path)
    run_id = run_id or latest_run_id(store, pipeline_name)
    ctx = store.get_context_by_type_and_name("pipeline_run", run_id)
    if ctx is None:
        raise LookupError(f"run {run_id!r} not found in ML Metadata")
    report = RunReport(run_id=run_id, artifacts={})
    evaluation_uri = None
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
        elif key == "ReleaseCheck.check":
            _release_check(report, art.uri)
        elif key == "RegistryPusher.pushed_model" and props.get("pushed") and props["pushed"].int_value == 1:
            report.pushed_to = props["pushed_destination"].string_value
            report.pushed_version = props["pushed_version"].string_value
        elif key == "ExampleValidator.anomalies":
            report.anomalies = _anomalies(art.uri)
        elif key == "Evaluator.evaluation":
            evaluation_uri = art.uri
    if evaluation_uri:
        _evaluation(report, evaluation_uri)
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
