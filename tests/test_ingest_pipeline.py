"""ImageExampleGen inside TFX: the cached execution is reused exactly when no input changed."""
from ml_metadata.proto import metadata_store_pb2

from schemas.config import PipelineConfig
from tests.helpers import encode, execution_states, run_example_gen, scene


def test_example_gen_is_cached_until_an_input_changes(make_tree, tmp_path):
    root = make_tree({**{f"real/r{i}.jpg": encode(scene(i)) for i in range(4)},
                      **{f"synthesized/sd/s{i}.png": encode(scene(50 + i), "PNG") for i in range(4)}})
    cfg = PipelineConfig.model_validate({
        "pipeline_root": str(tmp_path / "root"), "metadata_path": str(tmp_path / "md.sqlite"),
        "data": {"input": str(root)}}).resolved()
    execution = metadata_store_pb2.Execution
    run_example_gen(cfg)
    run_example_gen(cfg)
    assert execution_states(cfg.metadata_path) == [execution.COMPLETE, execution.CACHED]
    # a new file deep in a source folder changes the fingerprint (TFX's own glob would miss it)
    (root / "synthesized" / "sd" / "s9.png").write_bytes(encode(scene(99), "PNG"))
    run_example_gen(cfg)
    assert execution_states(cfg.metadata_path) == [execution.COMPLETE, execution.CACHED, execution.COMPLETE]
