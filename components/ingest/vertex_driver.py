"""ImageExampleGen's driver on Vertex AI Pipelines: the task's pre-cache-check hook
(`python -m components.ingest.vertex_driver`, set by pipeline/vertex.py when compiling).

It is TFX's Kubeflow V2 FileBasedExampleGen driver (span, version, the resolved input_config, the
output artifact) with one change: the input fingerprint, which Vertex puts into the step's cache key,
is ours, the one the local `Driver` computes (components/ingest/executor.py): every input file (path,
label, size, GCS generation / mtime), the manifests, held-out sets and curator feedback. TFX's own
fingerprints only what its glob of input_base/pattern matches; with the folder layout (pattern `*`)
those are the top-level folders, so with caching on, files added or replaced under the same prefix
would have reused stale examples.
"""
from __future__ import annotations

from absl import logging
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.io import fileio
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils
from tfx.orchestration.kubeflow.v2.file_based_example_gen import driver as tfx_driver

from components.ingest.executor import _data_input, evaluation_inputs, ingest_options
from components.ingest.listing import inputs_fingerprint

MODULE = "components.ingest.vertex_driver"
FINGERPRINT = example_gen_utils.FINGERPRINT_PROPERTY_NAME
EXAMPLES = "examples"


def run_driver(executor_input: pipeline_spec_pb2.ExecutorInput,
               component_inputs_spec: pipeline_spec_pb2.ComponentInputsSpec | None = None) -> str:
    """Runs TFX's driver, then writes our fingerprint into its output; returns the fingerprint."""
    tfx_driver._run_driver(executor_input, component_inputs_spec)   # noqa: SLF001 - the driver's body
    exec_properties = kubeflow_v2_entrypoint_utils.parse_execution_properties(
        executor_input.inputs.parameter_values, executor_input.inputs.parameters, component_inputs_spec)
    fingerprint = inputs_fingerprint(_data_input(exec_properties), ingest_options(exec_properties),
                                     *evaluation_inputs(exec_properties))
    path = executor_input.outputs.output_file
    out = pipeline_spec_pb2.ExecutorOutput()
    with fileio.open(path, "rb") as f:
        json_format.Parse(f.read(), out)
    logging.info("input fingerprint (every input file): %s; TFX's glob fingerprint was: %s",
                 fingerprint, out.parameter_values[FINGERPRINT].string_value)
    out.parameter_values[FINGERPRINT].string_value = fingerprint
    for artifact in out.artifacts[EXAMPLES].artifacts:
        artifact.metadata[FINGERPRINT] = fingerprint
    with fileio.open(path, "wb") as f:
        f.write(json_format.MessageToJson(out, sort_keys=True))
    return fingerprint


def main(args) -> None:
    """`args`: TFX's driver flags (--json_serialized_invocation_args, --json_serialized_inputs_spec_args)."""
    executor_input = pipeline_spec_pb2.ExecutorInput()
    json_format.Parse(args.json_serialized_invocation_args, executor_input, ignore_unknown_fields=True)
    spec = None
    if getattr(args, "json_serialized_inputs_spec_args", None):
        spec = pipeline_spec_pb2.ComponentInputsSpec()
        json_format.Parse(args.json_serialized_inputs_spec_args, spec, ignore_unknown_fields=True)
    run_driver(executor_input, spec)


if __name__ == "__main__":
    from absl import app
    logging.set_verbosity(logging.INFO)
    app.run(main, flags_parser=tfx_driver._parse_flags)   # noqa: SLF001 - TFX's driver command line
