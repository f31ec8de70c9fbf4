"""`ReleaseCheck`: the TFX component after the Evaluator (calibration, robustness, final blessing)."""

import json

from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact as tfx_artifact
from tfx.types import standard_artifacts

from components.release_check.blessing import BLESSED_PROPERTY, write_marker
from components.release_check.check import run_release_check

class ReleaseCheckResult(tfx_artifact.Artifact):
    """release_check.json (calibration, robustness, verdict and reasons) + scores.json."""
    TYPE_NAME = "synthdetect.ReleaseCheck"  # Vertex requires namespace.Name artifact type names


@component
def ReleaseCheck(  # noqa: N802 - a TFX component: the function name is its class name
    examples: InputArtifact[standard_artifacts.Examples],
    model: InputArtifact[standard_artifacts.Model],
    baseline_model: InputArtifact[standard_artifacts.Model],
    evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
    tfma_blessing: InputArtifact[standard_artifacts.ModelBlessing],
    check: OutputArtifact[ReleaseCheckResult],
    blessing: OutputArtifact[standard_artifacts.ModelBlessing],
    thresholds_json: Parameter[str],
    holdout_sets_json: Parameter[str] = "[]",
    # the model serving now (ProductionModel) and TFMA's candidate-vs-production evaluation
    # (ProductionEvaluator); absent in graphs without the comparison
    production_model: InputArtifact[standard_artifacts.Model] = None,
    production_evaluation: InputArtifact[standard_artifacts.ModelEvaluation] = None,
    production_blessing: InputArtifact[standard_artifacts.ModelBlessing] = None,
) -> None:
    from components.evaluator.production import COMPARED, PRODUCTION_VERSION
    from components.registry.production import FOUND, REGISTRY, VERSION
    from components.trainer.artifact import serving_model_dir
    tfma_blessed = tfma_blessing.get_int_custom_property("blessed") == 1
    production = None
    if production_model is not None:
        production = {"version": None, "registry": production_model.get_string_custom_property(REGISTRY)}
        if production_model.get_int_custom_property(FOUND) == 1:
            if production_evaluation is None or production_blessing is None or \
                    production_blessing.get_int_custom_property(COMPARED) != 1:
                raise RuntimeError("the production model was found but not evaluated (ProductionEvaluator)")
            production.update(version=production_model.get_string_custom_property(VERSION),
                              model_dir=serving_model_dir(production_model.uri),
                              evaluation_uri=production_evaluation.uri,
                              tfma_blessed=production_blessing.get_int_custom_property("blessed") == 1)
    result = run_release_check(examples.uri, model.uri, baseline_model.uri, evaluation.uri, tfma_blessed,
                               json.loads(thresholds_json), check.uri,
                               holdout_sets=json.loads(holdout_sets_json), production=production)
    blessed = int(result["blessed"])
    for art in (check, blessing):
        art.set_int_custom_property(BLESSED_PROPERTY, blessed)
        art.set_string_custom_property(PRODUCTION_VERSION, (production or {}).get("version") or "")
    # what TFX's own Evaluator sets, so LatestBlessedModelStrategy resolvers understand this blessing
    blessing.set_string_custom_property("current_model", model.uri)
    blessing.set_int_custom_property("current_model_id", model.id)
    write_marker(blessing.uri, bool(blessed), result["reasons"])
