"""`ProductionEvaluator`: TFX's Evaluator, the candidate against the production model.

It is `tfx.components.Evaluator` (same spec, same executor, same outputs, a Beam component that
runs on Dataflow like the first Evaluator) with `baseline_model` = the ProductionModel step's output
and `make_production_eval_config` (the gains over production on the eval split, the same slices).
One difference: when the registry had no production model (`found = 0`) it evaluates nothing and
marks its blessing `compared = 0`, so the graph needs no conditional branch (a step skipped by
`tfx.dsl.Cond` leaves its consumers without an input on Vertex AI Pipelines, where TFX cannot mark
an input optional) and ReleaseCheck reads "no production model yet" from the artifact.
"""
from __future__ import annotations

import os

from tfx.components.evaluator import executor as evaluator_executor
from tfx.components.evaluator.component import Evaluator
from tfx.dsl.components.base import executor_spec
from tfx.utils import io_utils

from components.registry.production import FOUND, VERSION

COMPARED = "compared"          # blessing property: 1 when a production model was evaluated
PRODUCTION_VERSION = "production_version"
NOT_COMPARED_FILE = "NOT_COMPARED"


class ProductionEvaluatorExecutor(evaluator_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        [production] = input_dict["baseline_model"]
        [blessing] = output_dict["blessing"]
        if production.get_int_custom_property(FOUND) != 1:
            blessing.set_int_custom_property(COMPARED, 0)
            io_utils.write_string_file(os.path.join(blessing.uri, NOT_COMPARED_FILE), "no production model\n")
            return
        super().Do(input_dict, output_dict, exec_properties)
        blessing.set_int_custom_property(COMPARED, 1)
        blessing.set_string_custom_property(PRODUCTION_VERSION, production.get_string_custom_property(VERSION))


class ProductionEvaluator(Evaluator):
    """tfx.components.Evaluator whose executor skips the evaluation when there is no production model."""
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(ProductionEvaluatorExecutor)
