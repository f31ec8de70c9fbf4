"""The synthdetect pipeline definition: one function, the same graph for every runner.

ImageExampleGen -> StatisticsGen -> ImportSchemaGen -> ExampleValidator -> Transform
  -> Trainer[vgg16_finetune] + Trainer[baseline] -> Evaluator (TFMA: candidate vs baseline)
  ProductionModel (the registry's `production`) -> ProductionEvaluator (TFMA: candidate vs production)
  -> ReleaseCheck (calibration, robustness, production, final blessing) -> RegistryPusher (versioned registry)

The component ids below are the names ML Metadata records every step under; `pipeline/artifacts.py`
finds a run's outputs by them. TFX and the components are imported inside the functions, so reading
these names (`synthdetect runs`) does not load TensorFlow.

Where the steps run is a placement, chosen when the graph is built: `LocalPlacement` (here, the
LocalDagRunner) or `pipeline.vertex.VertexPlacement` (Vertex AI Pipelines, Dataflow, Vertex AI
training, the runtime parameters). It supplies the Trainer, the Beam args, the path mapping and the
values of the parameterisable exec properties; the graph itself is the same.
"""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from schemas import SCHEMA_DIR
from schemas.config import PipelineConfig

if TYPE_CHECKING:
    from tfx.orchestration import pipeline as tfx_pipeline

# Component ids, in graph order.
EXAMPLE_GEN = "ImageExampleGen"
STATISTICS_GEN = "StatisticsGen"
SCHEMA_GEN = "ImportSchemaGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
TRANSFORM = "Transform"
CANDIDATE_TRAINER = "Trainer_vgg16_finetune"
BASELINE_TRAINER = "Trainer_baseline"
EVALUATOR = "Evaluator"
PRODUCTION_MODEL = "ProductionModel"
PRODUCTION_EVALUATOR = "ProductionEvaluator"
RELEASE_CHECK = "ReleaseCheck"
PUSHER = "RegistryPusher"
RUNTIME_PARAMETERS = "RuntimeParameters"   # Vertex only, first: pipeline/runtime_parameters.py
MODEL_NAME = "vgg16_finetune"
# Output keys of those components that are read back after a run.
EXAMPLES = "examples"
STATISTICS = "statistics"
ANOMALIES = "anomalies"
TRANSFORM_GRAPH = "transform_graph"
MODEL = "model"
EVALUATION = "evaluation"
BLESSING = "blessing"
CHECK = "check"
PUSHED_MODEL = "pushed_model"


# Steps that read or change the registry: never reused from an earlier run, even with enable_cache
# (a cached RegistryPusher would report a push it did not make; a cached ProductionModel would compare
# with a production model that has moved). A fresh ProductionModel output also makes the steps after
# it (ProductionEvaluator, ReleaseCheck) run again; everything before them stays cached.
NEVER_CACHED = (PRODUCTION_MODEL, PUSHER)


def never_cache_registry_steps(ir) -> None:
    """Turns caching off, in a compiled pipeline IR (pipeline_pb2.Pipeline), for NEVER_CACHED."""
    for node in ir.nodes:
        if node.pipeline_node.node_info.id in NEVER_CACHED:
            node.pipeline_node.execution_options.caching_options.enable_cache = False


def trainer_config(cfg: PipelineConfig, variant: str) -> dict:
    """Every model setting goes to run_fn; the baseline differs only in starting from scratch."""
    return {**cfg.model.model_dump(), "variant": variant,
            "weights": cfg.model.weights if variant == MODEL_NAME else "none"}


class LocalPlacement:
    """Every step here (LocalDagRunner): TFX's Trainer, the pipeline's Beam args, local paths as
    they are, the config's values. The interface `create_components` builds the graph with
    (`pipeline.vertex.VertexPlacement` is the other one)."""

    beam_args: tuple[str, ...] = ()   # appended to each Beam component's own; here the pipeline's apply

    def __init__(self, cfg: PipelineConfig):
        self.cfg = cfg

    def trainer_class(self) -> type:
        from tfx.components import Trainer
        return Trainer

    def trainer(self, custom_config, **kwargs):
        """A Trainer (`trainer_class`) with `custom_config` (a dict, or what `parameter` gave)."""
        return self.trainer_class()(custom_config=custom_config, **kwargs)

    def beam(self, component):
        """`component` (a Beam component) with this placement's Beam args after its own."""
        return component.with_beam_pipeline_args(list(self.beam_args)) if self.beam_args else component

    def path(self, value: str, where: str) -> str:
        """A local path as the step reads it (`where`: component id.exec property, for errors)."""
        return value

    def parameter(self, component_id: str, prop: str, value):
        """The value of exec property `prop` of `component_id`: `value`, the config's, here; on Vertex
        the RuntimeParameters step's output for the exec properties it makes (pipeline/parameters.py)."""
        return value

    def components(self, components: list) -> list:
        """The pipeline's components: `components`, plus what the placement adds."""
        return components


def create_components(cfg: PipelineConfig, placement: LocalPlacement | None = None) -> list:
    # TFX's modules, not its `tfx.v1` facade: that one also loads the Vertex AI SDK (half of the
    # import time of a local run)
    from tfx.components import Evaluator, ExampleValidator, StatisticsGen, Transform
    from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
    from tfx.proto import trainer_pb2

    from components.evaluator.eval_config import make_eval_config, make_production_eval_config
    from components.evaluator.production import ProductionEvaluator
    from components.ingest.component import example_gen_input, make_example_gen
    from components.ingest.plan import holdout_split
    from components.registry.component import RegistryPusher
    from components.registry.production import ProductionModel, seen_at_build
    from components.release_check.component import ReleaseCheck

    placement = placement or LocalPlacement(cfg)
    param, beam = placement.parameter, placement.beam
    input_base, input_config = example_gen_input(cfg.data.input)
    example_gen = beam(make_example_gen(
        cfg, input_base=param(EXAMPLE_GEN, "input_base", input_base),
        input_config=param(EXAMPLE_GEN, "input_config", input_config)).with_id(EXAMPLE_GEN))
    statistics_gen = beam(StatisticsGen(examples=example_gen.outputs[EXAMPLES]).with_id(STATISTICS_GEN))
    schema_gen = ImportSchemaGen(
        schema_file=placement.path(os.path.join(SCHEMA_DIR, "schema.pbtxt"), f"{SCHEMA_GEN}.schema_file"),
    ).with_id(SCHEMA_GEN)
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs[STATISTICS], schema=schema_gen.outputs["schema"]).with_id(EXAMPLE_VALIDATOR)
    transform = beam(Transform(
        examples=example_gen.outputs[EXAMPLES], schema=schema_gen.outputs["schema"],
        preprocessing_fn="components.transform.preprocessing.preprocessing_fn").with_id(TRANSFORM))

    def trainer(variant: str, component_id: str):
        return placement.trainer(
            run_fn="components.trainer.run_fn.run_fn",
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs[TRANSFORM_GRAPH],
            schema=schema_gen.outputs["schema"],
            train_args=trainer_pb2.TrainArgs(splits=["train"]),
            eval_args=trainer_pb2.EvalArgs(splits=["eval"]),
            custom_config=param(component_id, "custom_config", trainer_config(cfg, variant)),
        ).with_id(component_id)

    candidate = trainer(MODEL_NAME, CANDIDATE_TRAINER)
    baseline = trainer("baseline", BASELINE_TRAINER)
    # the held-out splits too: sliced by split, gated on split=eval (eval_config.py)
    splits = ["eval"] + [holdout_split(n) for n in cfg.evaluation.holdout_names()]
    evaluator = beam(Evaluator(
        examples=example_gen.outputs[EXAMPLES],
        model=candidate.outputs[MODEL],
        baseline_model=baseline.outputs[MODEL],
        example_splits=splits,
        eval_config=param(EVALUATOR, "eval_config", make_eval_config(cfg.thresholds))).with_id(EVALUATOR))
    # champion/challenger: the model serving now, on the same data and slices
    production = ProductionModel(registry=cfg.registry, seen_at_build=seen_at_build(cfg.registry)).with_id(
        PRODUCTION_MODEL)
    production_evaluator = beam(ProductionEvaluator(
        examples=example_gen.outputs[EXAMPLES],
        model=candidate.outputs[MODEL],
        baseline_model=production.outputs[MODEL],
        example_splits=splits,
        eval_config=param(PRODUCTION_EVALUATOR, "eval_config", make_production_eval_config(cfg.thresholds)),
    ).with_id(PRODUCTION_EVALUATOR))
    release_check = ReleaseCheck(
        examples=example_gen.outputs[EXAMPLES],
        model=candidate.outputs[MODEL],
        baseline_model=baseline.outputs[MODEL],
        evaluation=evaluator.outputs[EVALUATION],
        tfma_blessing=evaluator.outputs[BLESSING],
        thresholds_json=param(RELEASE_CHECK, "thresholds_json",
                              json.dumps(cfg.thresholds.model_dump(), sort_keys=True)),
        holdout_sets_json=json.dumps(cfg.evaluation.holdout_names()),
        production_model=production.outputs[MODEL],
        production_evaluation=production_evaluator.outputs[EVALUATION],
        production_blessing=production_evaluator.outputs[BLESSING]).with_id(RELEASE_CHECK)
    ingest = cfg.ingest.model_dump()
    if ingest["feedback"]:   # recorded with the model; the one path among the ingest settings
        ingest["feedback"] = placement.path(ingest["feedback"], f"{PUSHER}.ingest_json.feedback")
    pusher = RegistryPusher(
        model=candidate.outputs[MODEL],
        model_blessing=release_check.outputs[BLESSING],
        release_check=release_check.outputs[CHECK],
        examples=example_gen.outputs[EXAMPLES],
        registry=cfg.registry, model_name=MODEL_NAME, pipeline_name=cfg.pipeline_name,
        ingest=ingest, promote=cfg.promote).with_id(PUSHER)
    return placement.components([example_gen, statistics_gen, schema_gen, example_validator, transform,
                                 candidate, baseline, evaluator, production, production_evaluator, release_check,
                                 pusher])


def create_pipeline(cfg: PipelineConfig) -> tfx_pipeline.Pipeline:
    from tfx.orchestration import metadata
    from tfx.orchestration.pipeline import Pipeline
    return Pipeline(
        pipeline_name=cfg.pipeline_name,
        pipeline_root=cfg.pipeline_root,
        components=create_components(cfg),
        enable_cache=cfg.enable_cache,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            cfg.metadata_path),
        beam_pipeline_args=list(cfg.beam_args),
    )
