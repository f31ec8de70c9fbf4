"""Which process runs (or ran) a local pipeline run, so a run whose process is gone is reported as
`interrupted` instead of `running` forever.

ML Metadata cannot tell: a run killed with SIGKILL (or by a reboot, OOM killer, closed terminal)
leaves its executing component RUNNING there. So the local runner writes `<run_id>.process.json`
next to the run's log (`<folder of metadata_path>/logs/`) before the pipeline starts:

    {"run_id", "pipeline", "pid", "host", "process_start" (the OS's start time of that pid), "started_at",
     "outcome": null | "complete" | "failed" | "interrupted", "ended_at"}

and fills in `outcome` when the run ends in any way it can observe. A file rather than an MLMD
property: it exists before TFX creates the run's context, it is never a second writer on the SQLite
database TFX is using, and readers keep opening MLMD read-only.

A run killed before TFX created its context has only this record (and its log): `records()` lists
them for `synthdetect runs`.

A run without an outcome is alive when a process with that pid and start time exists on this host
(the start time guards against a reused pid). On another host it cannot be checked: `unknown`.
"""
from __future__ import annotations

import datetime
import json
import os
import socket
import tempfile

import psutil

ALIVE, GONE, UNKNOWN = "alive", "gone", "unknown"


def log_dir(metadata_path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(metadata_path)), "logs")


def log_path(metadata_path: str, run_id: str) -> str:
    return os.path.join(log_dir(metadata_path), f"{run_id}.log")


def record_path(metadata_path: str, run_id: str) -> str:
    return os.path.join(log_dir(metadata_path), f"{run_id}.process.json")


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def _write(path: str, record: dict) -> None:
    """Atomically (a reader never sees half a record)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".process-", suffix=".tmp", dir=os.path.dirname(path))
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def start(metadata_path: str, run_id: str, pipeline: str | None = None) -> dict:
    """Records this process as the one running `run_id` (of pipeline `pipeline`)."""
    me = psutil.Process()
    record = {"run_id": run_id, "pipeline": pipeline, "pid": me.pid, "host": socket.gethostname(),
              "process_start": me.create_time(), "started_at": _now(), "outcome": None, "ended_at": None}
    _write(record_path(metadata_path, run_id), record)
    return record


def expect(metadata_path: str, run_id: str, components: list[str]) -> None:
    """Records the ids of the components the run will execute (so `runs` can say "3/12 components"
    while it runs, before ML Metadata has heard of the later ones)."""
    record = read(metadata_path, run_id) or {"run_id": run_id}
    record.update(components=list(components))
    _write(record_path(metadata_path, run_id), record)


def components(record: dict | None) -> list[str]:
    """The components a run's record (`read`) says it would execute ([] when not recorded)."""
    ids = (record or {}).get("components")
    return [str(i) for i in ids] if isinstance(ids, list) else []


def finish(metadata_path: str, run_id: str, outcome: str) -> None:
    record = read(metadata_path, run_id) or {"run_id": run_id}
    record.update(outcome=outcome, ended_at=_now())
    _write(record_path(metadata_path, run_id), record)


def read(metadata_path: str, run_id: str) -> dict | None:
    """The run's record, or None (runs from before records existed, or a record that is unreadable)."""
    try:
        with open(record_path(metadata_path, run_id)) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def records(metadata_path: str) -> list[dict]:
    """Every readable process record beside this metadata database (any pipeline, any outcome)."""
    try:
        names = sorted(n for n in os.listdir(log_dir(metadata_path)) if n.endswith(".process.json"))
    except OSError:
        return []
    out = []
    for name in names:
        record = read(metadata_path, name[:-len(".process.json")])
        if record is not None and record.get("run_id") == name[:-len(".process.json")]:
            out.append(record)
    return out


def problem(metadata_path: str, run_id: str) -> str | None:
    """Why the run's record exists but cannot be used (unreadable, not JSON, a pid or start time that
    is no number), naming the file; None when it is usable or absent."""
    path = record_path(metadata_path, run_id)
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        return f"{path}: {type(e).__name__}: {e}"
    if not isinstance(record, dict):
        return f"{path}: must hold a JSON object, found {type(record).__name__}"
    for key, kinds in (("pid", int), ("process_start", (int, float))):
        value = record.get(key)
        if record.get("outcome") is None and (isinstance(value, bool) or not isinstance(value, kinds)):
            return f"{path}: {key!r} must be a number, found {value!r}"
    return None


def state(record: dict) -> str:
    """alive | gone | unknown (another host) for the process in `record`."""
    if record.get("outcome"):
        return GONE
    if record.get("host") != socket.gethostname():
        return UNKNOWN
    try:
        proc = psutil.Process(int(record["pid"]))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return GONE
        started = proc.create_time()
    except psutil.NoSuchProcess:
        return GONE
    except (psutil.AccessDenied, KeyError, TypeError, ValueError):
        return UNKNOWN
    # another process that got the same pid later (e.g. after a reboot) is not the run
    return ALIVE if abs(started - float(record.get("process_start") or 0)) < 1.0 else GONE
