"""ImageExampleGen inside TFX: the cached execution is reused exactly when no input changed."""
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from components.ingest.component import make_example_gen
from pipeline.artifacts import open_store
from schemas.config import PipelineConfig
from tests.test_ingest_beam import encode, scene


def _run(cfg: PipelineConfig) -> None:
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="ingest-cache-test", pipeline_root=cfg.pipeline_root, components=[make_example_gen(cfg)],
        enable_cache=True, beam_pipeline_args=list(cfg.beam_args),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(cfg.metadata_path)))


def _states(md: str) -> list[int]:
    store = open_store(md)
    return [e.last_known_state for e in sorted(store.get_executions(), key=lambda e: e.id)]


def test_example_gen_is_cached_until_an_input_changes(make_tree, tmp_path):
    root = make_tree({**{f"real/r{i}.jpg": encode(scene(i)) for i in range(4)},
                      **{f"synthesized/sd/s{i}.png": encode(scene(50 + i), "PNG") for i in range(4)}})
    cfg = PipelineConfig.model_validate({
        "pipeline_root": str(tmp_path / "root"), "metadata_path": str(tmp_path / "md.sqlite"),
        "data": {"input": str(root)}}).resolved()
    execution = metadata_store_pb2.Execution
    _run(cfg)
    _run(cfg)
    assert _states(cfg.metadata_path) == [execution.COMPLETE, execution.CACHED]
    # a new file deep in a source folder changes the fingerprint (TFX's own glob would miss it)
    (root / "synthesized" / "sd" / "s9.png").write_bytes(encode(scene(99), "PNG"))
    _run(cfg)
    assert _states(cfg.metadata_path) == [execution.COMPLETE, execution.CACHED, execution.COMPLETE]
