"""Running the pipeline locally (LocalDagRunner, SQLite MLMD, Beam DirectRunner) with a progress bar
and a full log file, and preflight checks that turn user mistakes into one-line errors."""
from __future__ import annotations

import datetime
import logging
import os
import re
import tempfile
from pathlib import Path

from pipeline import process_record
from pipeline.logs import route_library_logs
from schemas.config import PipelineConfig

_NODE_RE = re.compile(r"Component (\S+) is (running|finished)\.")
_CACHED_RE = re.compile(r"A cached execution \d+ is used\.")   # tfx/orchestration/portable/launcher.py
PROGRESS_LOGGER = "synthdetect.progress"   # = components.trainer.run_fn.PROGRESS_LOGGER (no TF import here)


class PipelineFailed(Exception):
    def __init__(self, component: str | None, cause: BaseException, log_path: str):
        self.component, self.cause, self.log_path = component, cause, log_path
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[-1][:300]
        super().__init__(f"component {component or '?'} failed: {type(cause).__name__}: {first} "
                         f"(full log: {log_path})")


class LocationError(Exception):
    """pipeline_root, metadata_path or registry cannot be written; one line."""


class MetadataPathError(LocationError):
    """metadata_path cannot hold the SQLite ML Metadata database; one line."""


SQLITE_HEADER = b"SQLite format 3\x00"


def check_metadata_path(path: str) -> None:
    """The SQLite ML Metadata database can be opened or created at `path` (its folder is created if
    needed, as the run would). Raises MetadataPathError saying which path and why not."""
    p = Path(path)
    where = f"metadata_path {path!r}"
    if p.exists():
        if p.is_dir():
            raise MetadataPathError(f"{where} is a directory; give the path of a .sqlite file")
        if not p.is_file():
            raise MetadataPathError(f"{where} is not a regular file")
        try:
            with open(p, "r+b") as f:  # opened for writing, as MLMD will; nothing is written
                head = f.read(len(SQLITE_HEADER))
        except OSError as e:
            raise MetadataPathError(f"{where} cannot be opened for writing: {e.strerror or e}") from None
        if head and head != SQLITE_HEADER:
            raise MetadataPathError(f"{where} is not an SQLite database (ML Metadata); move it away or "
                                    "choose another path")
        return
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".synthdetect-probe-", dir=p.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        target = e.filename if isinstance(e.filename, str) else str(p.parent)
        raise MetadataPathError(f"{where} is not usable: cannot create {target!r}: {e.strerror or e}") from None


def check_writable_folder(key: str, path: str) -> None:
    """A local folder the run writes into (pipeline_root, registry) exists as a folder we can write
    in, or can be created: its nearest existing ancestor is a folder we can write in. Nothing is
    created (a probe file is written and removed). gs:// and vertex:// locations are left to the
    service. Raises LocationError naming the key, the path and why."""
    if "://" in path:
        return
    p = Path(path)
    where = f"{key} {path!r}"
    if p.exists() and not p.is_dir():
        raise LocationError(f"{where} is not a folder")
    existing = p
    while not existing.exists():
        if existing.is_symlink():
            raise LocationError(f"{where} cannot be created: {str(existing)!r} is a broken symlink")
        existing = existing.parent
    if not existing.is_dir():
        raise LocationError(f"{where} cannot be created: {str(existing)!r} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".synthdetect-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise LocationError(f"{where} is not writable: cannot write in {str(existing)!r}: "
                            f"{e.strerror or e}") from None


def check_inputs(cfg: PipelineConfig):
    """The checks that need neither the pipeline nor TensorFlow (run first: a mistake answers in a
    second): pipeline_root, registry and the metadata database writable, inputs listable. Returns the
    run's Listing (input count, curator feedback)."""
    from components.ingest.listing import input_base_and_pattern, resolve_run_inputs

    check_writable_folder("pipeline_root", cfg.pipeline_root)
    check_writable_folder("registry", cfg.registry)
    check_metadata_path(cfg.metadata_path)
    base, pattern = input_base_and_pattern(cfg.data.input)
    ev = cfg.evaluation
    return resolve_run_inputs(base if pattern == "*" else os.path.join(base, pattern), cfg.ingest,
                              [(h.name, h.input) for h in ev.holdout_sets],
                              ev.leave_out.model_dump() if ev.leave_out else None)


def check_weights(cfg: PipelineConfig) -> None:
    """The pretrained weights loadable (WeightsError otherwise)."""
    from components.trainer.model import fetch_imagenet_weights
    if cfg.model.weights == "imagenet":
        fetch_imagenet_weights()


class _ProgressHandler(logging.Handler):
    """Turns LocalDagRunner's 'Component X is running/finished' log lines into progress updates."""

    def __init__(self, on_event):
        super().__init__(logging.INFO)
        self.on_event = on_event
        self.current: str | None = None

    def emit(self, record):
        message = record.getMessage()
        if record.name == PROGRESS_LOGGER:   # a Trainer's line per epoch (components/trainer/run_fn.py)
            self.on_event(message.split(" ", 1)[0], "epoch", message)
            return
        if self.current and _CACHED_RE.match(message):   # TFX's launcher reused an earlier execution
            self.on_event(self.current, "cached")
            return
        m = _NODE_RE.match(message)
        if m:
            self.current = m.group(1) if m.group(2) == "running" else None
            self.on_event(m.group(1), m.group(2))


def new_run_id() -> str:
    return datetime.datetime.now().strftime("%Y%m%dT%H%M%S.%f")


def run_local(cfg: PipelineConfig, log_path: str, run_id: str | None = None, on_event=None) -> str:
    """Runs the whole pipeline; returns the run id. All library logging goes to `log_path`."""
    from tfx.dsl.compiler import compiler
    from tfx.orchestration.portable import runtime_parameter_utils
    from tfx.dsl.compiler import constants
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from pipeline.pipeline import create_pipeline, never_cache_registry_steps

    run_id = run_id or new_run_id()
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.metadata_path).parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(log_path)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    progress = _ProgressHandler(on_event or (lambda node, state, detail=None: None))
    saved = route_library_logs([file_handler, progress])
    # so `runs` can tell a killed run from a running one
    process_record.start(cfg.metadata_path, run_id, cfg.pipeline_name)
    outcome = "interrupted"  # KeyboardInterrupt, SystemExit; a SIGKILL records nothing (the pid is gone)
    try:
        pipeline = create_pipeline(cfg)
        process_record.expect(cfg.metadata_path, run_id, [c.id for c in pipeline.components])
        ir = compiler.Compiler().compile(pipeline)
        never_cache_registry_steps(ir)
        runtime_parameter_utils.substitute_runtime_parameter(
            ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
        LocalDagRunner().run_with_ir(ir)
        outcome = "complete"
    except Exception as e:  # re-raised with the failing component and the log path
        outcome = "failed"
        logging.getLogger("synthdetect").exception("pipeline run %s failed", run_id)
        raise PipelineFailed(progress.current, e, log_path) from e
    finally:
        process_record.finish(cfg.metadata_path, run_id, outcome)
        route_library_logs(saved, logging.WARNING)
        file_handler.close()
    return run_id
