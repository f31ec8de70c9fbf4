"""`ReleaseCheck`: the TFX component after the Evaluator (calibration, robustness, final blessing)."""

import json

import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact as tfx_artifact
from tfx.types import standard_artifacts

from components.release_check.check import run_release_check

InputArtifact = tfx.dsl.components.InputArtifact
OutputArtifact = tfx.dsl.components.OutputArtifact
Parameter = tfx.dsl.components.Parameter


class ReleaseCheckResult(tfx_artifact.Artifact):
    """release_check.json (calibration, robustness, verdict and reasons) + scores.json."""
    TYPE_NAME = "synthdetect.ReleaseCheck"  # Vertex requires namespace.Name artifact type names


@tfx.dsl.components.component
def ReleaseCheck(
    examples: InputArtifact[standard_artifacts.Examples],
    model: InputArtifact[standard_artifacts.Model],
    baseline_model: InputArtifact[standard_artifacts.Model],
    evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
    tfma_blessing: InputArtifact[standard_artifacts.ModelBlessing],
    check: OutputArtifact[ReleaseCheckResult],
    blessing: OutputArtifact[standard_artifacts.ModelBlessing],
    thresholds_json: Parameter[str],
    holdout_sets_json: Parameter[str] = "[]",
) -> None:
    tfma_blessed = tfma_blessing.get_int_custom_property("blessed") == 1
    result = run_release_check(examples.uri, model.uri, baseline_model.uri, evaluation.uri, tfma_blessed,
                               json.loads(thresholds_json), check.uri,
                               holdout_sets=json.loads(holdout_sets_json))
    blessed = int(result["blessed"])
    for art in (check, blessing):
        art.set_int_custom_property("blessed", blessed)
    # what TFX's own Evaluator sets, so LatestBlessedModelStrategy resolvers understand this blessing
    blessing.set_string_custom_property("current_model", model.uri)
    blessing.set_int_custom_property("current_model_id", model.id)
    with tf.io.gfile.GFile(f"{blessing.uri}/{'BLESSED' if blessed else 'NOT_BLESSED'}", "w") as f:
        f.write("\n".join(result["reasons"]) + "\n")
