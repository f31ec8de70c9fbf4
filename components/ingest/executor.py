"""ImageExampleGen's TFX glue: options in and out of exec properties, the input driver, the executor.

The Beam job itself is `job.py`; the files it leaves are described in `outputs.py`.
"""
from __future__ import annotations

import os
from typing import Any

import apache_beam as beam
from absl import logging
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen import base_example_gen_executor, driver
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from components.ingest import outputs
from components.ingest.job import build_ingest
from components.ingest.listing import inputs_fingerprint, resolve_run_inputs
from components.ingest.plan import HOLDOUT_PREFIX
from schemas.config import IngestConfig


# ------------------------------------------------------------------------------------ options
def ingest_options(exec_properties: dict[str, Any]) -> IngestConfig:
    return IngestConfig.from_dict(_custom_dict(exec_properties))


def _custom_dict(exec_properties: dict[str, Any]) -> dict:
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if not raw:
        return {}
    cc = example_gen_pb2.CustomConfig()
    json_format.Parse(raw, cc)
    st = struct_pb2.Struct()
    if cc.custom_config.Is(struct_pb2.Struct.DESCRIPTOR):
        cc.custom_config.Unpack(st)
    return json_format.MessageToDict(st)


def evaluation_inputs(exec_properties: dict[str, Any]) -> tuple[list[tuple[str, str]], dict | None]:
    """(held-out sets as (name, input) pairs, leave_out spec or None) from the custom config."""
    d = _custom_dict(exec_properties)
    sets = [(h["name"], h["input"]) for h in d.get("holdout_sets") or []]
    return sets, d.get("leave_out") or None


def pack_options(opts: dict) -> example_gen_pb2.CustomConfig:
    st = struct_pb2.Struct()
    st.update({k: list(v) if isinstance(v, tuple) else v for k, v in opts.items() if v is not None})
    cc = example_gen_pb2.CustomConfig()
    cc.custom_config.Pack(st)
    return cc


def _split_buckets(exec_properties: dict) -> list[tuple[str, int]]:
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
    return [(s.name, s.hash_buckets) for s in output_config.split_config.splits]


def _data_input(exec_properties: dict) -> str:
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    pattern = input_config.splits[0].pattern
    # '*' means "the folder layout"; any other pattern names a manifest file inside input_base.
    return base if pattern == "*" else os.path.join(base, pattern)


class Driver(driver.FileBasedDriver):
    """Fingerprints every input file (path, label, size, mtime/generation from the one listing of
    the run; not just the top-level entries TFX's glob would see), so the cached ExampleGen is reused
    exactly when no input, manifest or curator decision changed."""

    def resolve_exec_properties(self, exec_properties, pipeline_info, component_info):
        exec_properties = super().resolve_exec_properties(exec_properties, pipeline_info, component_info)
        exec_properties[example_gen_utils.FINGERPRINT_PROPERTY_NAME] = inputs_fingerprint(
            _data_input(exec_properties), ingest_options(exec_properties), *evaluation_inputs(exec_properties))
        return exec_properties


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """ImageExampleGen executor: writes Split-*/ TFRecords plus ingest_summary.json, members.jsonl
    and quarantine.jsonl into the Examples artifact directory."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # required by the base class
        raise NotImplementedError("ImageExampleGen writes its splits itself (see Do)")

    def Do(self, input_dict, output_dict, exec_properties):
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        splits = _split_buckets(exec_properties)
        examples.split_names = artifact_utils.encode_split_names([name for name, _ in splits])
        buckets = [(name, b) for name, b in splits if not name.startswith(HOLDOUT_PREFIX)]
        opts = ingest_options(exec_properties)
        listing = resolve_run_inputs(_data_input(exec_properties), opts, *evaluation_inputs(exec_properties))
        with self._make_beam_pipeline() as p:
            n = build_ingest(p, listing, examples.uri, opts, buckets)
            logging.info("ingesting %d input files", n)
        summary = outputs.read_summary(examples.uri)
        for key in ("inputs", "written", "exact_duplicates", "near_duplicates", "quarantined", "skipped",
                    "leaked_into_training"):
            examples.set_int_custom_property(f"ingest_{key}", int(summary[key]))
        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip")
        for warning in summary.get("warnings", []):
            logging.warning("ingestion: %s", warning)
