"""A `synthdetect run` killed during training (issue 16, case 10): `runs`, `runs show` and `report`
say `interrupted` (not `running` forever), and the next run removes the partial output folders."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from pipeline import process_record
from tests.conftest import REPO, SAMPLE

CLI = str(Path(sys.executable).parent / "synthdetect")


def _cli(*args, cwd):
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=900, cwd=cwd)


# ------------------------------------------------------------------------- the process record
def test_a_record_of_a_live_process_is_alive_until_it_finishes(tmp_path):
    md = str(tmp_path / "mlmd.sqlite")
    record = process_record.start(md, "r1")
    assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
    assert process_record.read(md, "r1") == record
    assert process_record.state(record) == process_record.ALIVE
    process_record.finish(md, "r1", "failed")
    done = process_record.read(md, "r1")
    assert done["outcome"] == "failed" and done["ended_at"]
    assert process_record.state(done) == process_record.GONE
    assert process_record.read(md, "no-such-run") is None


def test_a_dead_or_reused_pid_is_gone_and_another_host_is_unknown():
    child = subprocess.Popen(["true"])
    child.wait()
    me = psutil.Process()
    base = {"host": socket.gethostname(), "outcome": None}
    assert process_record.state({**base, "pid": child.pid, "process_start": time.time()}) == process_record.GONE
    # this pid is alive, but it is not the process that started the run (pid reused)
    reused_pid = {**base, "pid": me.pid, "process_start": me.create_time() - 3600}
    assert process_record.state(reused_pid) == process_record.GONE
    assert process_record.state({**base, "pid": me.pid, "process_start": me.create_time()}) == process_record.ALIVE
    assert process_record.state({**base, "host": "elsewhere", "pid": me.pid,
                                 "process_start": me.create_time()}) == process_record.UNKNOWN


# --------------------------------------------------------------------- a real run, SIGKILLed
def _write_config(tmp: Path, epochs: int) -> Path:
    cfg = yaml.safe_load((REPO / "configs" / "local.yaml").read_text())
    cfg.update(pipeline_root=str(tmp / "root"), metadata_path=str(tmp / "mlmd.sqlite"),
               registry=str(tmp / "registry"),
               thresholds={"min_accuracy": 0.0, "min_auc": 0.0, "min_accuracy_gain": -1.0, "min_auc_gain": -1.0,
                           "max_robustness_drop": 1.0})
    cfg["data"]["input"] = str(SAMPLE)
    cfg["model"].update(image_size=32, epochs=epochs, batch_size=16, weights="none", deterministic=True)
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _running_trainer(log: Path) -> str | None:
    if not log.exists():
        return None
    running = re.findall(r"Component (\S+) is running\.", log.read_text(errors="replace"))
    return running[-1] if running and running[-1].startswith("Trainer_") else None


@pytest.mark.e2e
def test_a_killed_run_is_interrupted_and_the_next_run_cleans_up_and_resumes_the_trainer(tmp_path):
    """Issues 16 and 22: the whole pipeline SIGKILLed once a Trainer has checkpointed an epoch.
    `runs`, `runs show` and `report` say `interrupted` (not `running` forever); the same command
    again removes the killed run's partial output folders, re-ingests (byte-identical data, so the
    same checkpoint key) and that Trainer resumes at its next epoch instead of starting over, its
    history still covering every epoch."""
    epochs = 6
    config = _write_config(tmp_path, epochs=epochs)
    stderr = (tmp_path / "run.stderr").open("w")
    proc = subprocess.Popen([CLI, "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=stderr,
                            cwd=tmp_path)
    deadline = time.time() + 900
    journals: list[Path] = []
    while not journals:
        assert proc.poll() is None, "the run ended before a Trainer checkpointed an epoch: " + \
            (tmp_path / "run.stderr").read_text()[-3000:]
        assert time.time() < deadline, "no Trainer checkpoint within 15 minutes"
        journals = list((tmp_path / "root").glob("Trainer_*/_checkpoints/*/epochs.json"))
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    trainer = journals[0].relative_to(tmp_path / "root").parts[0]
    done_before = len(json.loads(journals[0].read_text()))
    assert 1 <= done_before < epochs
    (log,) = (tmp_path / "logs").glob("*.log")
    run_id = log.stem

    # the killed trainer left output folders that ML Metadata does not know
    partial = sorted((tmp_path / "root" / trainer).glob("model/*"))
    assert partial, list((tmp_path / "root" / trainer).rglob("*"))

    out = _cli("runs", "--config", config, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    (run,) = json.loads(out.stdout)
    assert run["run_id"] == run_id
    assert run["status"] == "interrupted"
    assert run["components"][trainer] == "interrupted"
    assert run["components"]["ImageExampleGen"] == "complete"
    # every component the run set out to execute, the ones it never reached too (issue 27.7: "6/7")
    assert len(run["components"]) == 12 and run["components"]["RegistryPusher"] == "not run"
    assert run["process"]["pid"] == proc.pid and run["process"]["state"] == "gone"
    assert run["process"]["outcome"] is None  # SIGKILL: the run could record nothing
    assert run["end"]
    out = _cli("runs", "--config", config, cwd=tmp_path)
    line = next(li for li in out.stdout.splitlines() if li.startswith(run_id))
    assert " interrupted " in line and "running" not in line and re.search(r" \d+/12 components ", line), line
    assert f"{trainer}: interrupted" in out.stdout and f"process {proc.pid} on" in out.stdout

    out = _cli("runs", "--config", config, "show", run_id, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    lineage = json.loads(out.stdout)
    assert lineage["status"] == "interrupted"
    assert {s["component"]: s["state"] for s in lineage["steps"]}[trainer] == "interrupted"
    assert lineage["models"] == []  # the partial model folder is not an artifact of the run
    assert lineage["production_model"]["found"] is False   # the (empty) registry's, resolved before training

    out = _cli("report", run_id, "--config", config, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["status"] == "interrupted"
    out = _cli("report", run_id, "--config", config, cwd=tmp_path)
    assert f"run {run_id}: interrupted" in out.stdout

    # the same command again: partial folders removed, the Trainer resumed, the run completes
    out = _cli("run", "--config", config, "--json", cwd=tmp_path)
    assert out.returncode in (0, 3), out.stderr[-3000:]
    assert re.search(r"removed \d+ partial output folders of interrupted or failed runs", out.stderr)
    assert not any(p.exists() for p in partial)
    assert f"{trainer} epoch {done_before + 1}/{epochs}" in out.stderr      # the progress line, resumed
    assert f"{trainer} epoch 1/{epochs}" not in out.stderr
    new = json.loads(out.stdout)
    assert new["status"] == "complete"
    model = Path(new["artifacts"][f"{trainer}.model"])
    h = json.loads((model / "Format-Serving" / "assets.extra" / "training_history.json").read_text())
    assert h["resumed_after_epoch"] == done_before and len(h["history"]["loss"]) == epochs
    assert not list((tmp_path / "root").glob(f"{trainer}/_checkpoints/*"))   # removed once saved
    out = _cli("runs", "--config", config, "--json", cwd=tmp_path)
    runs = json.loads(out.stdout)
    assert [(r["run_id"], r["status"]) for r in runs] == [(new["run_id"], "complete"), (run_id, "interrupted")]


@pytest.mark.e2e
def test_a_run_killed_before_tfx_created_its_context_is_listed_as_interrupted(tmp_path):
    """Issue 26.4: killed after it recorded its process and before TFX created the run (nothing of it
    in ML Metadata, only its log and process record), next to a run ML Metadata knows."""
    config = _write_config(tmp_path, epochs=1)
    _mlmd_with_runs(tmp_path / "mlmd.sqlite", ["run-known"])   # a finished run, in the same database
    proc = subprocess.Popen([CLI, "run", "--config", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=tmp_path)
    deadline = time.time() + 600
    while not list((tmp_path / "logs").glob("*.process.json")):
        assert proc.poll() is None and time.time() < deadline, "the run never recorded its process"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (record,) = (tmp_path / "logs").glob("*.process.json")
    run_id = record.name[:-len(".process.json")]
    assert (tmp_path / "logs" / f"{run_id}.log").exists()
    # TFX had not created the run: no context of this run in the database
    from pipeline.artifacts import open_store
    assert open_store(str(tmp_path / "mlmd.sqlite")).get_context_by_type_and_name("pipeline_run", run_id) is None

    out = _cli("runs", "--config", config, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    runs = json.loads(out.stdout)
    # beside the run that ML Metadata knows (one finished step of eight: incomplete): both listed, newest first
    assert [(r["run_id"], r["status"]) for r in runs] == [(run_id, "interrupted"), ("run-known", "incomplete")]
    run = runs[0]
    assert run["process"]["pid"] == proc.pid and run["process"]["state"] == "gone" and run["process"]["outcome"] is None
    assert run["pushed_version"] is None and run["blessed"] is None and run["start"]
    out = _cli("runs", "--config", config, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(li for li in out.stdout.splitlines() if li.startswith(run_id))
    assert " interrupted " in line and f"process {proc.pid} on" in out.stdout
    out = _cli("runs", "--config", config, "show", run_id, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["status"] == "interrupted"
    # another pipeline sharing the database does not list it
    out = _cli("runs", "--config", config, "--set", "pipeline_name=another-pipeline", "--json", cwd=tmp_path)
    assert out.returncode == 0 and json.loads(out.stdout) == [], out.stderr[-2000:]


# -------------------------------------------- issue 26.3: one unreadable run record hides nothing
def _mlmd_with_runs(path: Path, runs: list[str]) -> None:
    """An ML Metadata database as TFX leaves one: a pipeline context, one pipeline_run context per run,
    one finished ImageExampleGen execution per run."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb
    cfg = pb.ConnectionConfig()
    cfg.sqlite.filename_uri = str(path)
    cfg.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(cfg)
    ptype, rtype, ntype = (store.put_context_type(pb.ContextType(name=n)) for n in ("pipeline", "pipeline_run", "node"))
    etype = store.put_execution_type(pb.ExecutionType(name="ImageExampleGen"))
    [pipeline, node] = store.put_contexts([pb.Context(type_id=ptype, name="synthdetect"),
                                          pb.Context(type_id=ntype, name="synthdetect.ImageExampleGen")])
    for run in runs:
        [ctx] = store.put_contexts([pb.Context(type_id=rtype, name=run)])
        [e] = store.put_executions([pb.Execution(type_id=etype, last_known_state=pb.Execution.COMPLETE)])
        store.put_attributions_and_associations(
            [], [pb.Association(context_id=c, execution_id=e) for c in (pipeline, node, ctx)])


@pytest.mark.parametrize("record", [
    {"pid": "PID", "process_start": "yesterday"},       # this host, a live pid, a start time that is no number
    {"pid": None, "process_start": None, "outcome": None},
])
def test_one_unreadable_run_record_does_not_hide_the_other_runs(tmp_path, record):
    md = tmp_path / "mlmd.sqlite"
    _mlmd_with_runs(md, ["r1", "r2"])
    process_record.start(str(md), "r1")
    process_record.finish(str(md), "r1", "complete")
    path = process_record.record_path(str(md), "r2")
    rec = {"run_id": "r2", "host": socket.gethostname(), "outcome": None, **record}
    Path(path).write_text(json.dumps({k: (os.getpid() if v == "PID" else v) for k, v in rec.items()}))
    proc = _cli("runs", "--set", f"metadata_path={md}", cwd=REPO)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "r1" in proc.stdout and "r2" in proc.stdout, proc.stdout
    r2 = proc.stdout[proc.stdout.index("\nr2"):]
    assert "process record unreadable" in r2 and path in r2, proc.stdout
    lines = proc.stderr.strip().splitlines()    # listed, then one error line naming it, exit 1
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ") and path in lines[0], proc.stderr
