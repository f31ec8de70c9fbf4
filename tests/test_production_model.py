"""The production model a run compares with: resolved from the real registry by the ProductionModel
step's executor (issue 23), and the config that gates on it."""
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from components.registry.production import (FOUND, VERSION, ProductionModelExecutor,
                                            read_production, seen_at_build)
from components.registry.store import ALIASES_JSON, LocalRegistry, RegistryError
from schemas.config import PipelineConfig
from tests.tiny_models import tiny_model


def _run(registry: str, out: Path):
    art = standard_artifacts.Model()
    art.uri = str(out)
    out.mkdir(parents=True, exist_ok=True)
    ProductionModelExecutor().Do({}, {"model": [art]},
                                 {"registry": registry, "alias": "production", "seen_at_build": ""})
    return art


def _png(value: int) -> bytes:
    return tf.io.encode_png(tf.fill([8, 8, 3], tf.constant(value, tf.uint8))).numpy()


def test_an_empty_registry_has_no_production_model(tmp_path):
    art = _run(str(tmp_path / "registry"), tmp_path / "out")
    assert art.get_int_custom_property(FOUND) == 0
    assert not Path(path_utils.serving_model_path(art.uri)).exists()
    assert read_production(art.uri) is None
    assert seen_at_build(str(tmp_path / "registry")) == ""


def test_the_production_version_is_output_where_the_evaluator_looks(tmp_path):
    reg = LocalRegistry(tmp_path / "registry")
    good = tiny_model(tmp_path / "good", "good")
    const = tiny_model(tmp_path / "const", "constant")
    reg.push(str(good), {"model_name": "m", "threshold": 0.5}, aliases=("latest", "production"))
    reg.push(str(const), {"model_name": "m", "threshold": 0.4}, aliases=("latest",))   # v2: latest only
    assert reg.aliases() == {"latest": "v2", "production": "v1"}
    art = _run(str(reg.root), tmp_path / "out")
    assert art.get_int_custom_property(FOUND) == 1
    assert art.get_string_custom_property(VERSION) == "v1"
    assert read_production(art.uri)["version"] == "v1"
    assert seen_at_build(str(reg.root)) == "v1"
    served = tf.saved_model.load(path_utils.serving_model_path(art.uri))
    p = served.signatures["serving_images"](images=tf.constant([_png(250), _png(5)]))["p_synthesized"].numpy()
    assert p[0, 0] > 0.9 and p[1, 0] < 0.1          # the good model (v1), not the constant v2
    assert not np.allclose(p, 0.5)


def test_an_unreadable_registry_fails_the_step_with_one_line(tmp_path):
    reg = LocalRegistry(tmp_path / "registry")
    reg.push(str(tiny_model(tmp_path / "good", "good")), {"model_name": "m"}, aliases=("production",))
    (reg.root / ALIASES_JSON).chmod(0o644)
    (reg.root / ALIASES_JSON).write_text("{not json")
    with pytest.raises(RegistryError) as e:
        _run(str(reg.root), tmp_path / "out")
    assert "\n" not in str(e.value)
    assert seen_at_build(str(reg.root)) == ""


def test_thresholds_and_promotion_policy_in_the_config(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    base = {"data": {"input": str(data)}}
    cfg = PipelineConfig.model_validate(base)
    assert cfg.promote == "auto"
    t = cfg.thresholds
    assert (t.min_accuracy_gain_over_production, t.min_auc_gain_over_production,
            t.min_holdout_auc_gain_over_production) == (0.0, 0.0, 0.0)
    cfg = PipelineConfig.model_validate({**base, "registry": {"location": "reg", "promote": "manual"}})
    assert (cfg.registry, cfg.promote) == ("reg", "manual")
    for bad in ({"registry": {"promote": "manual"}}, {"registry": {"location": "r", "promte": "auto"}},
                {"registry": "r", "promote": "sometimes"},
                {"registry": {"location": "r", "promote": "auto"}, "promote": "manual"}):
        with pytest.raises(ValueError):
            PipelineConfig.model_validate({**base, **bad})
    assert json.loads(cfg.model_dump_json())["registry"] == "reg"
