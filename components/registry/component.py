"""`RegistryPusher`: pushes the candidate into the versioned registry, only when the release check
blessed it (replaces TFX's stock Pusher, which copies a directory and keeps no metadata).

A blessed model whose data fingerprint, training config and serving-side ingestion options equal an
existing version's (`release_key`) is not pushed again: an identical rerun is recorded as a duplicate
of that version (`duplicate_of`), the aliases stay where they are.

The new version's model.json carries the TFMA metrics of candidate and baseline, the thresholds,
the calibrated decision threshold, the robustness results, the data fingerprint (sha256 of the
ExampleGen's ingest_summary.json), the pipeline run id, a timestamp and the blessing's reasons.
The calibrated threshold is also written into the SavedModel as assets.extra/calibration.json.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.evaluator.calibration import json_safe
from components.ingest import outputs as ingest_outputs
from components.registry import vertex
from components.registry.pushed import (ALIASES, DUPLICATE_OF, PUSHED, PUSHED_DESTINATION, PUSHED_VERSION,
                                        VERTEX_MODEL, write_push_record)
from components.registry.store import CALIBRATION_PATH, DEFAULT_ALIASES, now_iso, open_registry
from components.release_check.blessing import BLESSED_PROPERTY
from components.release_check.check import holdout_summary, load_check
from components.release_check.component import ReleaseCheckResult
from components.trainer.artifact import read_history, serving_model_dir


def model_metadata(*, model_dir: str, check: dict, examples_uri: str, run_id: str | None, pipeline_name: str,
                   model_name: str, ingest: dict, source_model_uri: str) -> dict:
    """model.json (without "version", which the registry adds when it commits)."""
    raw_summary = ingest_outputs.summary_bytes(examples_uri)
    training = (read_history(model_dir) or {}).get("config", {})
    calib = check["calibration"]["candidate"]
    return json_safe({
        "schema": "synthdetect.model/1",
        "model_name": model_name,
        "created_at": now_iso(),
        "threshold": calib["threshold"],
        "pipeline": {"name": pipeline_name, "run_id": run_id, "source_model_uri": source_model_uri,
                     "examples_uri": examples_uri},
        "data": {"fingerprint": ingest_outputs.fingerprint_of(raw_summary), "ingest_summary": json.loads(raw_summary)},
        "metrics": check["tfma"]["metrics"],
        "thresholds": check["thresholds"],
        "calibration": calib,
        "robustness": {k: check["robustness"][k] for k in ("perturbations", "clean", "max_drop", "worst", "passed")},
        # per held-out set and model: auc, basis, gap, tpr_at_target_fpr, accuracy, at_threshold, counts
        "holdout": holdout_summary(check),
        "blessing": {"blessed": check["blessed"], "reasons": check["reasons"]},
        # the model that was serving when this one was gated (champion/challenger)
        "compared_with_production": production_record(check.get("production")),
        "serving": {"signature": "serving_images", "input": "images", "output": "p_synthesized",
                    "ingest": ingest, "image_size": training.get("image_size")},
        "training": training,
    })


def production_record(comparison: dict | None) -> dict:
    """model.json's record of the production comparison: the version, the registry and the figures
    of both models (eval split, TFMA; held-out AUCs), or why there was none."""
    if not comparison or not comparison.get("compared"):
        return {"compared": False, "reason": (comparison or {}).get("reason", "no comparison in this pipeline")}
    return {"compared": True, "version": comparison["version"], "registry": comparison.get("registry"),
            "metrics": comparison.get("metrics", {}),
            "holdout_auc": {name: {m: f.get("auc") for m, f in models.items()}
                            for name, models in (comparison.get("holdout") or {}).items()}}


PROMOTE_ALIASES = {"auto": DEFAULT_ALIASES, "manual": ("latest",)}


def release_key(meta: dict) -> str:
    """What makes two pushes the same model: the model name, the data (ingestion fingerprint), the
    training config and the ingestion options serving applies. Not the metrics, the run or the time."""
    basis = {"model_name": meta.get("model_name"), "data": (meta.get("data") or {}).get("fingerprint"),
             "training": meta.get("training") or {}, "ingest": (meta.get("serving") or {}).get("ingest") or {}}
    return "sha256:" + hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()


def find_duplicate(registry, key: str) -> str | None:
    """The newest version of `registry` with the same `release_key` (versions pushed before the key
    was recorded are keyed from their model.json); unreadable versions are skipped."""
    if not registry.exists():
        return None
    for version in reversed(registry.versions()):
        try:
            other = registry.model_json(version)
        except Exception:  # noqa: BLE001 - a damaged version is nobody's duplicate (registry list shows it)
            continue
        if isinstance(other, dict) and (other.get("release_key") or release_key(other)) == key:
            return version
    return None


def _local_copy(model_dir: str, tmp: str) -> str:
    """The registries copy from a local directory; a gs:// model artifact (Vertex runs) is fetched."""
    if not model_dir.startswith("gs://"):
        return model_dir
    for root, _, files in tf.io.gfile.walk(model_dir):
        rel = os.path.relpath(root, model_dir) if root != model_dir else ""
        tf.io.gfile.makedirs(os.path.join(tmp, rel))
        for name in files:
            tf.io.gfile.copy(os.path.join(root, name), os.path.join(tmp, rel, name), overwrite=True)
    return tmp


class RegistryPusherSpec(types.ComponentSpec):
    PARAMETERS = {
        "registry": ExecutionParameter(type=str),
        "model_name": ExecutionParameter(type=str),
        "pipeline_name": ExecutionParameter(type=str),
        "ingest_json": ExecutionParameter(type=str),
        "promote": ExecutionParameter(type=str, optional=True),   # auto (default) | manual
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "model_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
        "release_check": ChannelParameter(type=ReleaseCheckResult),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {"pushed_model": ChannelParameter(type=standard_artifacts.PushedModel)}


class RegistryPusherExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        [model] = input_dict["model"]
        [blessing] = input_dict["model_blessing"]
        [check_art] = input_dict["release_check"]
        [examples] = input_dict["examples"]
        [pushed] = output_dict["pushed_model"]
        check = load_check(check_art.uri)
        if blessing.get_int_custom_property(BLESSED_PROPERTY) != 1 or not check or not check.get("blessed"):
            logging.info("not pushing %s: not blessed (%s)", model.uri, "; ".join((check or {}).get("reasons", [])))
            pushed.set_int_custom_property(PUSHED, 0)
            return
        model_dir = serving_model_dir(model.uri)
        meta = model_metadata(model_dir=model_dir, check=check, examples_uri=examples.uri,
                              run_id=self._context.pipeline_run_id if self._context else None,
                              pipeline_name=exec_properties["pipeline_name"],
                              model_name=exec_properties["model_name"],
                              ingest=json.loads(exec_properties["ingest_json"]), source_model_uri=model.uri)
        extra = {CALIBRATION_PATH: json.dumps(meta["calibration"], indent=2)}
        location = exec_properties["registry"]
        promote = exec_properties.get("promote") or "auto"
        aliases = PROMOTE_ALIASES[promote]
        meta["release_key"] = release_key(meta)
        duplicate = find_duplicate(vertex.open_readable(location), meta["release_key"])
        if duplicate:
            logging.info("not pushing %s: the same data, training config and ingestion as %s of %s", model.uri,
                         duplicate, location)
            pushed.set_int_custom_property(PUSHED, 0)
            pushed.set_string_custom_property(DUPLICATE_OF, duplicate)
            write_push_record(pushed.uri, {"destination": None, "version": None, "duplicate_of": duplicate,
                                            "release_key": meta["release_key"], "promote": promote})
            return
        with tempfile.TemporaryDirectory(prefix="synthdetect-push-") as tmp:
            src = _local_copy(model_dir, tmp)
            if vertex.is_vertex(location):
                version, resource = vertex.push(location, src, meta, aliases=aliases, extra_files=extra)
                destination = f"{vertex.parse_target(location).artifacts}/{version}"
                pushed.set_string_custom_property(VERTEX_MODEL, resource)
            else:
                version = open_registry(location).push(src, meta, aliases=aliases, extra_files=extra)
                destination = f"{location.rstrip('/')}/{version}"
        logging.info("pushed %s to %s", model.uri, destination)
        pushed.set_int_custom_property(PUSHED, 1)
        pushed.set_string_custom_property(PUSHED_DESTINATION, destination)
        pushed.set_string_custom_property(PUSHED_VERSION, version)
        pushed.set_string_custom_property(ALIASES, ",".join(aliases))
        write_push_record(pushed.uri, {"destination": destination, "version": version, "aliases": list(aliases),
                                        "promote": promote})


class RegistryPusher(base_component.BaseComponent):
    SPEC_CLASS = RegistryPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(RegistryPusherExecutor)

    def __init__(self, model, model_blessing, release_check, examples, registry: str, model_name: str,
                 pipeline_name: str, ingest: dict, promote: str = "auto"):
        if promote not in PROMOTE_ALIASES:
            raise ValueError(f"promote: {promote!r} is not one of {sorted(PROMOTE_ALIASES)}")
        super().__init__(spec=RegistryPusherSpec(
            model=model, model_blessing=model_blessing, release_check=release_check, examples=examples,
            pushed_model=types.Channel(type=standard_artifacts.PushedModel),
            registry=registry, model_name=model_name, pipeline_name=pipeline_name,
            ingest_json=json.dumps(ingest, sort_keys=True), promote=promote))
