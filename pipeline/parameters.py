"""Runtime parameters of the pipeline on Vertex AI: what a run or a schedule may change without compiling.

The compiled spec declares one pipeline parameter per entry of `parameter_specs(cfg)`, with the
config's value as default:

    data_input                         data.input (a gs:// folder, prefix or manifest file)
    epochs, batch_size, learning_rate, image_size          model.*
    every field of thresholds (schemas.config.ThresholdConfig), under its own name: min_accuracy,
    min_auc, …; a new threshold field becomes a parameter without code changes here

TFX's KubeflowV2DagRunner supports `RuntimeParameter` only as a whole exec property, while these
values live inside JSON exec properties (the Trainers' custom_config, the Evaluator's eval_config,
ReleaseCheck's thresholds, ImageExampleGen's input_base + input_config). So the first step,
`RuntimeParameters`, takes the parameters, validates the config they make (the same pydantic schema
as `synthdetect config`), and outputs those exec properties as String values; the steps read them
as dynamic exec properties (`channel.future()[0].value`, task output parameters on Vertex). With
every parameter at its default it outputs exactly what compiling the config would have put there.
Local runs do not use this: there the config file is the run's input.

Scalar parameters keep their type (int, float); others (None-able or dict thresholds) are JSON text.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from schemas.config import ModelConfig, PipelineConfig, ThresholdConfig

COMPONENT_ID = "RuntimeParameters"
CONFIG_KEY = "config_json"       # the compiled config (the defaults) as an exec property of the step
MODEL_PARAMETERS = ("epochs", "batch_size", "learning_rate", "image_size")
# output key -> the exec property it feeds: {component id: exec property}
OUTPUTS = {
    "input_base": {"ImageExampleGen": "input_base"},
    "input_config": {"ImageExampleGen": "input_config"},
    "candidate_config": {"Trainer_vgg16_finetune": "custom_config"},
    "baseline_config": {"Trainer_baseline": "custom_config"},
    "eval_config": {"Evaluator": "eval_config"},
    "production_eval_config": {"ProductionEvaluator": "eval_config"},
    "thresholds_json": {"ReleaseCheck": "thresholds_json"},
}


@dataclasses.dataclass(frozen=True)
class ParameterSpec:
    name: str            # the pipeline parameter's name (what --param and parameter_values use)
    path: str            # the config key it sets
    ptype: type          # int, float or str (str: JSON text unless the config value is a string)
    json_text: bool = False  # str parameter holding JSON (None-able / dict config values)


def _ptype(annotation) -> tuple[type, bool]:
    if annotation in (int, float, str):
        return annotation, False
    return str, True


def _specs() -> list[ParameterSpec]:
    out = [ParameterSpec("data_input", "data.input", str)]
    for name in MODEL_PARAMETERS:
        out.append(ParameterSpec(name, f"model.{name}", *_ptype(ModelConfig.model_fields[name].annotation)))
    for name, field in ThresholdConfig.model_fields.items():   # generic: every threshold is a parameter
        out.append(ParameterSpec(name, f"thresholds.{name}", *_ptype(field.annotation)))
    return out


SPECS: tuple[ParameterSpec, ...] = tuple(_specs())
BY_NAME = {s.name: s for s in SPECS}


def _get(cfg_dict: dict, path: str) -> Any:
    node: Any = cfg_dict
    for part in path.split("."):
        node = node[part]
    return node


def default_values(cfg: PipelineConfig) -> dict[str, int | float | str]:
    """name -> the config's value, typed as the parameter (the compiled defaults)."""
    d = cfg.model_dump(mode="json")
    return {s.name: json.dumps(_get(d, s.path), sort_keys=True) if s.json_text else s.ptype(_get(d, s.path))
            for s in SPECS}


def overrides(values: dict[str, Any]) -> dict:
    """Parameter values -> a nested config override dict (JSON-text parameters decoded)."""
    out: dict = {}
    for name, value in values.items():
        s = BY_NAME[name]
        if s.json_text and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ValueError(f"parameter {name}: {value!r} is not JSON (e.g. null, 0.8 or "
                                 '{"set": 0.8})') from None
        node = out
        *parents, leaf = s.path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def resolve(config_json: str, values: dict[str, Any]) -> dict[str, str]:
    """The exec properties the parameters make (OUTPUTS' keys): the compiled config with the values
    applied, validated as a whole. Raises ValueError with a one-line message."""
    from pydantic import ValidationError

    from schemas.config import _merge, _one_line
    base = json.loads(config_json)
    try:
        cfg = PipelineConfig.model_validate(_merge(base, overrides(values)))
    except ValidationError as e:
        raise ValueError(f"runtime parameters: {_one_line(e)}") from None
    return exec_properties_of(cfg)


def exec_properties_of(cfg: PipelineConfig) -> dict[str, str]:
    """What create_vertex_components puts into the parameterised exec properties for `cfg`."""
    from tfx import v1 as tfx
    from tfx.utils import proto_utils

    from components.evaluator.eval_config import make_eval_config, make_production_eval_config
    from components.ingest.component import input_base_and_pattern
    from pipeline.pipeline import MODEL_NAME, trainer_config

    base, pattern = input_base_and_pattern(cfg.data.input)
    input_config = tfx.proto.Input(splits=[tfx.proto.Input.Split(name="all", pattern=pattern)])
    return {
        "input_base": base,
        "input_config": proto_utils.proto_to_json(input_config),
        "candidate_config": json.dumps(trainer_custom_config(cfg, trainer_config(cfg, MODEL_NAME)), sort_keys=True),
        "baseline_config": json.dumps(trainer_custom_config(cfg, trainer_config(cfg, "baseline")), sort_keys=True),
        "eval_config": proto_utils.proto_to_json(make_eval_config(cfg.thresholds)),
        "production_eval_config": proto_utils.proto_to_json(make_production_eval_config(cfg.thresholds)),
        "thresholds_json": json.dumps(cfg.thresholds.model_dump(), sort_keys=True),
    }


# ------------------------------------------------------- the Trainers' Vertex AI training settings
# (here, not in pipeline/vertex.py, which imports this module: the step computes them in the container)
def worker_pool_specs(cfg: PipelineConfig) -> list[dict]:
    """The Vertex AI CustomJob worker pool each Trainer runs on (one replica: run_fn trains on one host)."""
    v = cfg.vertex
    assert v is not None
    t = v.training
    machine: dict[str, Any] = {"machine_type": t.machine_type}
    if t.accelerator_type:
        machine.update(accelerator_type=t.accelerator_type, accelerator_count=t.accelerator_count)
    return [{"machine_spec": machine, "replica_count": 1,
             "container_spec": {"image_uri": v.trainer_image()},
             "disk_spec": {"boot_disk_type": "pd-ssd", "boot_disk_size_gb": t.boot_disk_size_gb}}]


def training_custom_config(cfg: PipelineConfig) -> dict:
    """Keys the google_cloud_ai_platform Trainer executor reads from the Trainer's custom_config."""
    from tfx.extensions.google_cloud_ai_platform import constants
    from tfx.extensions.google_cloud_ai_platform.trainer import executor as ai_trainer

    v = cfg.vertex
    assert v is not None
    job_spec: dict = {"worker_pool_specs": worker_pool_specs(cfg), "service_account": v.service_account}
    if v.network:
        job_spec["network"] = v.network
    return {
        constants.ENABLE_VERTEX_KEY: True,
        constants.VERTEX_REGION_KEY: v.region,
        ai_trainer.TRAINING_ARGS_KEY: {"project": v.project, "job_spec": job_spec, "labels": dict(v.labels)},
    }


def trainer_custom_config(cfg: PipelineConfig, model_config: dict) -> dict:
    """A Trainer's custom_config on Vertex: run_fn's settings + the Vertex AI training job's."""
    return {**model_config, **training_custom_config(cfg)}



# ---------------------------------------------------------------------------------------- the step
def _component_classes():
    """RuntimeParameters (component) and its executor; built on first use (TFX is imported then)."""
    from tfx.dsl.components.base import base_component, base_executor, executor_spec
    from tfx.types import standard_artifacts
    from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

    class Executor(base_executor.BaseExecutor):
        def Do(self, input_dict, output_dict, exec_properties):
            from absl import logging
            values = {name: exec_properties[name] for name in BY_NAME if exec_properties.get(name) is not None}
            values = {name: BY_NAME[name].ptype(v) for name, v in values.items()}
            logging.info("runtime parameters: %s", json.dumps(values, sort_keys=True))
            for key, value in resolve(exec_properties[CONFIG_KEY], values).items():
                output_dict[key][0].value = value

    spec = type("RuntimeParametersSpec", (ComponentSpec,), {
        "PARAMETERS": {CONFIG_KEY: ExecutionParameter(type=str),
                       **{s.name: ExecutionParameter(type=s.ptype) for s in SPECS}},
        "INPUTS": {},
        "OUTPUTS": {key: ChannelParameter(type=standard_artifacts.String) for key in OUTPUTS},
    })

    class RuntimeParameters(base_component.BaseComponent):
        """Turns the pipeline's runtime parameters into the exec properties of the steps (see module doc)."""
        SPEC_CLASS = spec
        EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

        def __init__(self, config_json: str, **parameters):
            from tfx import types
            outputs = {key: types.Channel(type=standard_artifacts.String) for key in OUTPUTS}
            super().__init__(spec=spec(**{CONFIG_KEY: config_json}, **parameters, **outputs))

    # importable by path (the compiled spec names pipeline.parameters.Executor): see __getattr__
    Executor.__qualname__, RuntimeParameters.__qualname__ = "Executor", "RuntimeParameters"
    return RuntimeParameters, Executor


def __getattr__(name: str):
    # `pipeline.parameters.Executor` is the executor class path in the compiled spec
    if name in ("RuntimeParameters", "Executor"):
        component, executor = _component_classes()
        globals().update(RuntimeParameters=component, Executor=executor)
        return globals()[name]
    raise AttributeError(name)


def config_json(cfg: PipelineConfig) -> str:
    """The config the step re-validates with the parameters applied; without the local-run paths
    (metadata_path, the local pipeline_root), which mean nothing inside a Vertex container."""
    return cfg.model_dump_json(exclude={"metadata_path", "pipeline_root"})


def parameterise(cfg: PipelineConfig, components: list) -> list:
    """components (create_vertex_components' list) with RuntimeParameters first and the
    parameterised exec properties read from it."""
    from tfx.orchestration import data_types

    from pipeline.parameters import RuntimeParameters  # the module __getattr__ builds it

    defaults = default_values(cfg)
    step = RuntimeParameters(
        config_json=config_json(cfg),
        **{s.name: data_types.RuntimeParameter(name=s.name, ptype=s.ptype, default=defaults[s.name])
           for s in SPECS}).with_id(COMPONENT_ID)
    by_id = {c.id: c for c in components}
    for key, targets in OUTPUTS.items():
        for component_id, prop in targets.items():
            c = by_id[component_id]
            c.exec_properties[prop] = step.outputs[key].future()[0].value
            c.add_upstream_node(step)
    return [step, *components]
