"""The run's progress lines: a step whose outputs TFX reused from an earlier run (enable_cache) is
reported as `cached`, not as `done (0s)` (issue 27.9). A real LocalDagRunner pipeline of one tiny
component, run twice with the cache on, through the same log handler `synthdetect run` uses."""
from tfx import v1 as tfx
from tfx.dsl.component.experimental.annotations import OutputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types.standard_artifacts import String

from pipeline.logs import route_library_logs
from pipeline.runner import _ProgressHandler


@component
def Hello(out: OutputArtifact[String]) -> None:  # noqa: N802 - a TFX component class name
    out.value = "hello"


def _run(tmp_path, events: list) -> None:
    handler = _ProgressHandler(lambda node, state, detail=None: events.append((node, state)))
    saved = route_library_logs([handler])
    try:
        tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
            pipeline_name="progress-test", pipeline_root=str(tmp_path / "root"), components=[Hello().with_id("Hello")],
            enable_cache=True,
            metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                str(tmp_path / "mlmd.sqlite"))))
    finally:
        route_library_logs(saved)


def test_a_cached_step_is_reported_as_cached(tmp_path):
    first: list = []
    _run(tmp_path, first)
    assert ("Hello", "running") in first and ("Hello", "finished") in first
    assert ("Hello", "cached") not in first
    again: list = []
    _run(tmp_path, again)
    assert again.index(("Hello", "running")) < again.index(("Hello", "cached")) < again.index(("Hello", "finished"))
