"""Beam ExampleGen for labelled image folders / manifests (local or gs://).

Every input file ends up in exactly one place: a split of the Examples artifact or
`quarantine.jsonl` (with a reason code). `ingest_summary.json` next to the splits counts both, so
`written + quarantined == inputs` can be checked by anyone.
"""
from __future__ import annotations

import json
import os
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen import base_example_gen_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs

from components.ingest.images import ImageInput, IngestOptions, decode_file, list_inputs

REPORT_DIR_KEY = "_synthdetect_report_dir"
QUARANTINE_FILE = "quarantine.jsonl"
SUMMARY_FILE = "ingest_summary.json"


def ingest_options(exec_properties: dict[str, Any]) -> IngestOptions:
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if not raw:
        return IngestOptions()
    cc = example_gen_pb2.CustomConfig()
    json_format.Parse(raw, cc)
    st = struct_pb2.Struct()
    if cc.custom_config.Is(struct_pb2.Struct.DESCRIPTOR):
        cc.custom_config.Unpack(st)
    return IngestOptions.from_dict(json_format.MessageToDict(st))


def pack_options(opts: dict) -> example_gen_pb2.CustomConfig:
    st = struct_pb2.Struct()
    st.update(opts)
    cc = example_gen_pb2.CustomConfig()
    cc.custom_config.Pack(st)
    return cc


class _Decode(beam.DoFn):
    QUARANTINE = "quarantine"

    def __init__(self, opts: IngestOptions):
        self._opts = opts

    def process(self, item: ImageInput):
        kind, payload = decode_file(item, self._opts)
        beam.metrics.Metrics.counter("synthdetect_ingest", kind).inc()
        if kind == "ok":
            yield payload
        else:
            yield beam.pvalue.TaggedOutput(self.QUARANTINE, payload)


def _summary(counts: dict[str, int], reasons: dict[str, int], inputs: int, opts: IngestOptions) -> str:
    written = counts.get("written", 0)
    quarantined = sum(reasons.values())
    return json.dumps({
        "inputs": inputs,
        "written": written,
        "quarantined": quarantined,
        "quarantine_reasons": dict(sorted(reasons.items())),
        "written_by_label": {k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("label:")},
        "accounted_for": written + quarantined == inputs,
        "options": {"neutralize_format": opts.neutralize_format, "codec": opts.codec,
                    "quality": opts.quality, "max_side": opts.max_side, "max_pixels": opts.max_pixels},
    }, indent=2, sort_keys=True)


def _write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as f:
        f.write(text.encode())


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
def ImagesToExample(pipeline: beam.Pipeline, exec_properties: dict[str, Any], split_pattern: str):
    """Reads every labelled image under input_base; yields tf.Examples, writes the quarantine."""
    opts = ingest_options(exec_properties)
    base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    # '*' means "the folder layout"; any other pattern names a manifest file inside input_base.
    items = list_inputs(base if split_pattern == "*" else os.path.join(base, split_pattern))
    report_dir = exec_properties.get(REPORT_DIR_KEY)
    decoded = (pipeline
               | "ListInputs" >> beam.Create(items, reshuffle=False)
               | "Distribute" >> beam.Reshuffle()
               | "DecodeValidate" >> beam.ParDo(_Decode(opts)).with_outputs(_Decode.QUARANTINE, main="ok"))
    if report_dir:
        quarantine = decoded[_Decode.QUARANTINE]
        (quarantine
         | "QuarantineJson" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
         | "WriteQuarantine" >> beam.io.WriteToText(os.path.join(report_dir, QUARANTINE_FILE),
                                                    shard_name_template="", num_shards=1))
        reasons = (quarantine | "Reasons" >> beam.Map(lambda r: r["reason"])
                   | "CountReasons" >> beam.combiners.Count.PerElement()
                   | "ReasonsDict" >> beam.combiners.ToDict())
        counts = (decoded.ok
                  | "CountKeys" >> beam.FlatMap(
                      lambda ex: ["written", "label:" + ex.features.feature["label"].bytes_list.value[0].decode()])
                  | "CountWritten" >> beam.combiners.Count.PerElement()
                  | "CountsDict" >> beam.combiners.ToDict())
        n_inputs = len(items)
        (pipeline
         | "One" >> beam.Create([None])
         | "Summary" >> beam.Map(lambda _, c, r: _summary(c, r, n_inputs, opts),
                                 c=beam.pvalue.AsSingleton(counts), r=beam.pvalue.AsSingleton(reasons))
         | "WriteSummary" >> beam.Map(lambda text: _write_text(os.path.join(report_dir, SUMMARY_FILE), text)))
    return decoded.ok


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """FileBasedExampleGen executor: images -> tf.Example, with quarantine and summary files
    written next to the Split-* folders of the output Examples artifact."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return ImagesToExample

    def Do(self, input_dict, output_dict, exec_properties):
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        exec_properties = dict(exec_properties)
        exec_properties[REPORT_DIR_KEY] = examples.uri
        super().Do(input_dict, output_dict, exec_properties)
        summary_path = os.path.join(examples.uri, SUMMARY_FILE)
        if FileSystems.exists(summary_path):
            with FileSystems.open(summary_path) as f:
                summary = json.loads(f.read())
            for key in ("inputs", "written", "quarantined"):
                examples.set_int_custom_property(f"ingest_{key}", int(summary[key]))
