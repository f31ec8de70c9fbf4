"""The RuntimeParameters step (Vertex only, the first): the pipeline's runtime parameters in, the
exec properties they make out (what and why: pipeline/parameters.py).

A plain TFX component: its spec declares one execution parameter per runtime parameter (typed as the
parameter) plus the compiled config (`config_json`), and one String output per parameterised exec
property (`parameters.OUTPUTS`); its executor applies the values to the config, validates it and
writes those exec properties. The compiled spec names the executor by its path,
`pipeline.runtime_parameters.Executor`, which the pipeline image imports.
"""
from __future__ import annotations

import json

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.orchestration import data_types
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from pipeline.parameters import BY_NAME, CONFIG_KEY, OUTPUTS, SPECS, config_json, default_values, resolve
from pipeline.pipeline import RUNTIME_PARAMETERS
from schemas.config import PipelineConfig


class RuntimeParametersSpec(ComponentSpec):
    PARAMETERS = {CONFIG_KEY: ExecutionParameter(type=str),
                  **{s.name: ExecutionParameter(type=s.ptype) for s in SPECS}}
    INPUTS: dict = {}
    OUTPUTS = {key: ChannelParameter(type=standard_artifacts.String) for key in OUTPUTS}


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        from absl import logging
        values = {name: spec.ptype(exec_properties[name]) for name, spec in BY_NAME.items()
                  if exec_properties.get(name) is not None}
        logging.info("runtime parameters: %s", json.dumps(values, sort_keys=True))
        for key, value in resolve(exec_properties[CONFIG_KEY], values).items():
            output_dict[key][0].value = value


class RuntimeParameters(base_component.BaseComponent):
    """Turns the pipeline's runtime parameters into the exec properties of the steps (see the module doc)."""
    SPEC_CLASS = RuntimeParametersSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, config_json: str, **parameters):
        outputs = {key: types.Channel(type=standard_artifacts.String) for key in OUTPUTS}
        super().__init__(spec=RuntimeParametersSpec(**{CONFIG_KEY: config_json}, **parameters, **outputs))


def make_runtime_parameters(cfg: PipelineConfig) -> RuntimeParameters:
    """The step for `cfg`: every parameter a pipeline parameter with the config's value as default."""
    defaults = default_values(cfg)
    return RuntimeParameters(
        config_json=config_json(cfg),
        **{s.name: data_types.RuntimeParameter(name=s.name, ptype=s.ptype, default=defaults[s.name])
           for s in SPECS}).with_id(RUNTIME_PARAMETERS)
