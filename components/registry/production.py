"""`ProductionModel`: the model serving now, resolved from the registry when a run starts.

The release gate compares the candidate with the from-scratch baseline of the same run and with the
model that is serving now, so that a weaker model never replaces a better one (champion/challenger).
This step is the pipeline's link to that model: it resolves the registry's `production` alias (local
folder, gs:// prefix, or the GCS artifacts of a vertex:// registry) and outputs it as a Model artifact
(the version's SavedModel under `Format-Serving/`, where TFX's Evaluator looks), so ML Metadata
records, for every run, which production version was compared. The version's model.json is kept
beside it as `production.json`.

No production model yet (an empty registry, or no `production` alias) -> the artifact has
`found = 0`, nothing else; the comparison is skipped and the report says so.
A registry that cannot be read (corrupt aliases.json, a dangling alias) fails the step with one line:
the gate cannot decide without knowing what serves.
"""
from __future__ import annotations

import json
import os
import shutil
from typing import Any

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import path_utils

PRODUCTION_ALIAS = "production"
PRODUCTION_JSON = "production.json"   # the production version's model.json, in the artifact
# custom properties of the output artifact
FOUND = "found"
VERSION = "version"
REGISTRY = "registry"


def resolve_production(location: str, alias: str = PRODUCTION_ALIAS) -> tuple[str, dict, str] | None:
    """(version, model.json, version directory) of the model `alias` points at in the registry at
    `location`; None when the registry is empty or has no such alias. RegistryError when it cannot
    be read."""
    from components.registry.vertex import open_readable
    reg = open_readable(location)
    if alias not in reg.aliases():
        return None
    version = reg.resolve(alias)
    return version, reg.model_json(version), f"{reg.location.rstrip('/')}/{version}"


def copy_version(version_dir: str, dest: str) -> None:
    """Copies a registry version (a SavedModel directory, local or gs://) to `dest` (local or gs://)."""
    if not version_dir.startswith("gs://") and not dest.startswith("gs://"):
        shutil.copytree(version_dir, dest, dirs_exist_ok=True)
        return
    if version_dir.startswith("gs://") and not dest.startswith("gs://"):
        from components.registry.store import download_tree
        download_tree(version_dir, dest)
        return
    for root, _, files in tf.io.gfile.walk(version_dir):
        rel = os.path.relpath(root, version_dir) if root != version_dir else ""
        tf.io.gfile.makedirs(os.path.join(dest, rel))
        for name in files:
            tf.io.gfile.copy(os.path.join(root, name), os.path.join(dest, rel, name), overwrite=True)


def read_production(uri: str) -> dict | None:
    """The production version's model.json from a ProductionModel artifact's folder (None: there was
    no production model)."""
    path = os.path.join(uri, PRODUCTION_JSON)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


class ProductionModelSpec(types.ComponentSpec):
    PARAMETERS = {
        "registry": ExecutionParameter(type=str),
        "alias": ExecutionParameter(type=str),
        # the version `alias` named when the pipeline was built: part of the cache key, so that a
        # cached run (enable_cache) never compares with a production model that has since moved
        "seen_at_build": ExecutionParameter(type=str),
    }
    INPUTS: dict = {}
    OUTPUTS = {"model": ChannelParameter(type=standard_artifacts.Model)}


class ProductionModelExecutor(base_executor.BaseExecutor):
    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        [out] = output_dict["model"]
        location = exec_properties["registry"]
        out.set_string_custom_property(REGISTRY, location)
        found = resolve_production(location, exec_properties["alias"])
        if found is None:
            logging.info("no %s model in %s: the comparison with production is skipped",
                         exec_properties["alias"], location)
            out.set_int_custom_property(FOUND, 0)
            return
        version, meta, version_dir = found
        copy_version(version_dir, path_utils.serving_model_path(out.uri))
        with tf.io.gfile.GFile(os.path.join(out.uri, PRODUCTION_JSON), "w") as f:
            json.dump(meta, f, indent=2)
        out.set_int_custom_property(FOUND, 1)
        out.set_string_custom_property(VERSION, version)
        logging.info("production model: %s of %s", version, location)


class ProductionModel(base_component.BaseComponent):
    """Outputs the registry's production model (see the module docstring)."""
    SPEC_CLASS = ProductionModelSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(ProductionModelExecutor)

    def __init__(self, registry: str, alias: str = PRODUCTION_ALIAS, seen_at_build: str = ""):
        super().__init__(spec=ProductionModelSpec(
            registry=registry, alias=alias, seen_at_build=seen_at_build,
            model=types.Channel(type=standard_artifacts.Model)))


def seen_at_build(location: str, alias: str = PRODUCTION_ALIAS) -> str:
    """The version `alias` names now in a local registry ("" when none or unreadable: the step itself
    reports why). A gs:// or vertex:// registry is not read when the pipeline is built (compiling for
    Vertex needs no credentials): "" there, so with `enable_cache: true` a cached ProductionModel step
    could name a production version that has moved since; the default (`enable_cache: false`) never does."""
    if location.startswith(("gs://", "vertex://")):
        return ""
    try:
        found = resolve_production(location, alias)
    except Exception:  # noqa: BLE001 - only a cache key; the step raises the real error
        return ""
    return found[0] if found else ""
