"""The synthdetect pipeline definition: one function, the same graph for every runner.

ImageExampleGen -> StatisticsGen -> ImportSchemaGen -> ExampleValidator -> Transform
  -> Trainer[vgg16_finetune] + Trainer[baseline] -> Evaluator (TFMA: candidate vs baseline)
  -> ReleaseCheck (calibration, robustness, final blessing) -> RegistryPusher (versioned registry)
"""
from __future__ import annotations

import json
import os

from tfx import v1 as tfx
from tfx.orchestration import pipeline as tfx_pipeline

from components.evaluator.eval_config import make_eval_config
from components.ingest.component import make_example_gen
from components.registry.component import RegistryPusher
from components.robustness.component import ReleaseCheck
from schemas import SCHEMA_DIR
from schemas.config import PipelineConfig

CANDIDATE_TRAINER = "Trainer_vgg16_finetune"
BASELINE_TRAINER = "Trainer_baseline"
MODEL_NAME = "vgg16_finetune"


def trainer_config(cfg: PipelineConfig, variant: str) -> dict:
    """Every model setting goes to run_fn; the baseline differs only in starting from scratch."""
    return {**cfg.model.model_dump(), "variant": variant,
            "weights": cfg.model.weights if variant == MODEL_NAME else "none"}


def create_components(cfg: PipelineConfig) -> list:
    example_gen = make_example_gen(cfg)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=os.path.join(SCHEMA_DIR, "schema.pbtxt"))
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn="components.transform.preprocessing.preprocessing_fn")

    def trainer(variant: str, component_id: str):
        return tfx.components.Trainer(
            run_fn="components.trainer.run_fn.run_fn",
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            train_args=tfx.proto.TrainArgs(splits=["train"]),
            eval_args=tfx.proto.EvalArgs(splits=["eval"]),
            custom_config=trainer_config(cfg, variant),
        ).with_id(component_id)

    candidate = trainer(MODEL_NAME, CANDIDATE_TRAINER)
    baseline = trainer("baseline", BASELINE_TRAINER)
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=candidate.outputs["model"],
        baseline_model=baseline.outputs["model"],
        example_splits=["eval"],
        eval_config=make_eval_config(cfg.thresholds))
    release_check = ReleaseCheck(
        examples=example_gen.outputs["examples"],
        model=candidate.outputs["model"],
        baseline_model=baseline.outputs["model"],
        evaluation=evaluator.outputs["evaluation"],
        tfma_blessing=evaluator.outputs["blessing"],
        thresholds_json=json.dumps(cfg.thresholds.model_dump(), sort_keys=True))
    pusher = RegistryPusher(
        model=candidate.outputs["model"],
        model_blessing=release_check.outputs["blessing"],
        release_check=release_check.outputs["check"],
        examples=example_gen.outputs["examples"],
        registry=cfg.registry, model_name=MODEL_NAME, pipeline_name=cfg.pipeline_name,
        ingest=cfg.ingest.model_dump())
    return [example_gen, statistics_gen, schema_gen, example_validator, transform,
            candidate, baseline, evaluator, release_check, pusher]


def create_pipeline(cfg: PipelineConfig) -> tfx_pipeline.Pipeline:
    return tfx.dsl.Pipeline(
        pipeline_name=cfg.pipeline_name,
        pipeline_root=cfg.pipeline_root,
        components=create_components(cfg),
        enable_cache=cfg.enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            cfg.metadata_path),
        beam_pipeline_args=list(cfg.beam_args),
    )
