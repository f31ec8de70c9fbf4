"""A `synthdetect run` killed during training (issue 16, case 10): `runs`, `runs show` and `report`
say `interrupted` (not `running` forever), and the next run removes the partial output folders."""
import io
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from components.registry.store import LocalRegistry
from pipeline import process_record
from tests.conftest import REPO
from tests.helpers import CLI, cli_in_process, tiny_config


def _cli(*args, cwd):
    """A real `synthdetect` process (the pipeline runs); the read-only commands run in process
    (tests.helpers.cli_in_process)."""
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=1800, cwd=cwd)


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
    return tiny_config(tmp, "run.yaml", epochs=epochs)


def _running_trainer(log: Path) -> str | None:
    if not log.exists():
        return None
    running = re.findall(r"Component (\S+) is running\.", log.read_text(errors="replace"))
    return running[-1] if running and running[-1].startswith("Trainer_") else None


def texture(rng, bright: bool) -> bytes:
    """A smooth random colour field (upsampled noise), dark (20-110) or bright (145-235)."""
    small = rng.uniform(0, 1, (6, 6, 3))
    img = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((48, 48), Image.BICUBIC), np.float32)
    img = (145 if bright else 20) + img / 255 * 90 + rng.normal(0, 2, img.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _holdout_config(tmp: Path, epochs: int) -> Path:
    """Issue 14's data (made here; distinct random smooth textures, so no two images are near duplicates):
      training input   real = dark textures, synthesized = bright textures (a brightness rule separates them)
      held-out set     an "unseen generator" whose synthesized images are dark like the real ones, plus
                       dark real images: the learnt rule cannot tell them apart (chance).
    Gated in distribution low enough for this tiny run, so that the held-out gate is the one that decides."""
    rng = np.random.default_rng(7)
    train = _write_tree(tmp / "train", {**{f"real/cam/r{i}.png": texture(rng, False) for i in range(60)},
                                        **{f"synthesized/gen_a/s{i}.png": texture(rng, True) for i in range(60)}})
    held = _write_tree(tmp / "held", {**{f"real/cam_b/r{i}.png": texture(rng, False) for i in range(16)},
                                      **{f"synthesized/gen_b/s{i}.png": texture(rng, False) for i in range(16)}})
    # from scratch (as the baseline): at 32 px and lr 1e-3 it learns the brightness rule in 4 epochs,
    # where fine-tuning the HED weights at that rate collapsed to a constant output
    return tiny_config(tmp, "holdout.yaml", data=train,
                       thresholds={"min_accuracy": 0.75, "min_auc": 0.85, "min_accuracy_gain": -1.0,
                                   "min_auc_gain": -1.0, "max_robustness_drop": 1.0, "min_holdout_auc": 0.7,
                                   "max_generalisation_gap": 0.15},
                       evaluation={"holdout_sets": [{"name": "gen_b", "input": str(held)}]},
                       epochs=epochs, learning_rate=0.001, augment=False)


@pytest.mark.e2e
@pytest.mark.timeout(2400)   # a run killed, then a whole run: more than 15 min on a loaded machine
def test_a_killed_run_is_interrupted_and_the_next_run_resumes_and_is_refused_on_a_held_out_generator(tmp_path):
    """Issues 16 and 22: the whole pipeline SIGKILLed once a Trainer has checkpointed an epoch.
    `runs`, `runs show` and `report` say `interrupted` (not `running` forever); the same command
    again removes the killed run's partial output folders, re-ingests (byte-identical data, so the
    same checkpoint key) and that Trainer resumes at its next epoch instead of starting over, its
    history still covering every epoch.
    Issue 14, on the same (resumed) run: a candidate that separates the training distribution well but
    is at chance on a held-out generator is refused, the reasons name that set, and the eval split's
    figures are those of the eval split alone. (One pipeline run for both: issue 25's suite time.)"""
    epochs = 4
    config = _holdout_config(tmp_path, epochs=epochs)
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

    out = cli_in_process("runs", "--config", config, "--json", cwd=tmp_path)
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
    out = cli_in_process("runs", "--config", config, cwd=tmp_path)
    line = next(li for li in out.stdout.splitlines() if li.startswith(run_id))
    assert " interrupted " in line and "running" not in line and re.search(r" \d+/12 components ", line), line
    assert f"{trainer}: interrupted" in out.stdout and f"process {proc.pid} on" in out.stdout

    out = cli_in_process("runs", "--config", config, "show", run_id, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    lineage = json.loads(out.stdout)
    assert lineage["status"] == "interrupted"
    assert {s["component"]: s["state"] for s in lineage["steps"]}[trainer] == "interrupted"
    assert lineage["models"] == []  # the partial model folder is not an artifact of the run
    assert lineage["production_model"]["found"] is False   # the (empty) registry's, resolved before training

    out = cli_in_process("report", run_id, "--config", config, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["status"] == "interrupted"
    out = cli_in_process("report", run_id, "--config", config, cwd=tmp_path)
    assert f"run {run_id}: interrupted" in out.stdout

    # the same command again: partial folders removed, the Trainer resumed, the run completes ...
    out = _cli("run", "--config", config, "--json", cwd=tmp_path)
    assert out.returncode == 3, out.stderr[-3000:]       # ... and is refused by the gate (README "Use in CI/CD")
    assert re.search(r"removed \d+ partial output folders of interrupted or failed runs", out.stderr)
    assert not any(p.exists() for p in partial)
    assert f"{trainer} epoch {done_before + 1}/{epochs}" in out.stderr      # the progress line, resumed
    assert f"{trainer} epoch 1/{epochs}" not in out.stderr
    rep = json.loads(out.stdout)
    assert rep["status"] == "complete"
    model = Path(rep["artifacts"][f"{trainer}.model"])
    h = json.loads((model / "Format-Serving" / "assets.extra" / "training_history.json").read_text())
    assert h["resumed_after_epoch"] == done_before and len(h["history"]["loss"]) == epochs
    assert not list((tmp_path / "root").glob(f"{trainer}/_checkpoints/*"))   # removed once saved

    # issue 14: the held-out set ingested apart from training
    held_in = rep["ingest"]["holdout_sets"]["gen_b"]
    assert held_in["written"] == 32 and held_in["leaked_into_training"] == 0
    # in distribution: the eval split only (TFMA also read the 32 held-out examples)
    n_eval = sum(rep["ingest"]["written_by_split"]["eval"].values())
    assert rep["metrics"]["candidate"]["example_count"] == n_eval
    assert rep["metrics"]["candidate"]["auc"] >= 0.85, rep["metrics"]
    # held out: at chance, refused, and the reasons name the set
    figures = rep["holdout"]["gen_b"]["candidate"]
    assert figures["basis"] == "held-out set" and (figures["n_real"], figures["n_synthesized"]) == (16, 16)
    assert 0.2 <= figures["auc"] <= 0.7 and figures["gap"] > 0.15
    assert rep["blessed"] is False and rep["pushed_to"] is None
    assert not any("binary_accuracy" in f or f.startswith("auc") for f in rep["validation_failures"])
    held_failures = [f for f in rep["validation_failures"] if f.startswith("held-out set gen_b:")]
    assert any("auc" in f and "< 0.7" in f for f in held_failures), rep["validation_failures"]
    assert any("generalisation gap" in f for f in held_failures)
    # a refusal through the whole CLI: the one decision line, an empty registry, and the decision with
    # its reasons kept by report --json and runs --json
    assert "NOT BLESSED: nothing pushed (exit 3; --allow-unblessed exits 0)" in out.stderr
    assert not (tmp_path / "registry").exists() or not any((tmp_path / "registry").rglob("saved_model.pb"))
    assert LocalRegistry(tmp_path / "registry").versions() == []
    got = cli_in_process("report", "--json", "--config", config, cwd=tmp_path)
    assert got.returncode == 0, got.stderr[-3000:]   # it only reads
    got = json.loads(got.stdout)
    assert got["blessed"] is False and got["run_id"] == rep["run_id"]
    assert any(f.startswith("held-out set gen_b:") for f in got["validation_failures"])
    out = cli_in_process("runs", "--config", config, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = json.loads(out.stdout)
    assert [(r["run_id"], r["status"]) for r in runs] == [(rep["run_id"], "complete"), (run_id, "interrupted")]
    assert runs[0]["blessed"] is False and any(f.startswith("held-out set gen_b:") for f in runs[0]["reasons"])
    # model.json is not written (nothing pushed); `report` shows the held-out set
    shown = cli_in_process("report", "--config", config, "--out", tmp_path / "report", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert "held-out sets" in shown.stdout and "gen_b" in shown.stdout
    md = (tmp_path / "report" / "report.md").read_text()
    assert "## Held-out sets (generalisation)" in md and "roc_holdout_gen_b.png" in md
    assert (tmp_path / "report" / "roc_holdout_gen_b.png").stat().st_size > 10_000


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

    out = cli_in_process("runs", "--config", config, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    runs = json.loads(out.stdout)
    # beside the run that ML Metadata knows (one finished step of eight: incomplete): both listed, newest first
    assert [(r["run_id"], r["status"]) for r in runs] == [(run_id, "interrupted"), ("run-known", "incomplete")]
    run = runs[0]
    assert run["process"]["pid"] == proc.pid and run["process"]["state"] == "gone" and run["process"]["outcome"] is None
    assert run["pushed_version"] is None and run["blessed"] is None and run["start"]
    out = cli_in_process("runs", "--config", config, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(li for li in out.stdout.splitlines() if li.startswith(run_id))
    assert " interrupted " in line and f"process {proc.pid} on" in out.stdout
    out = cli_in_process("runs", "--config", config, "show", run_id, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["status"] == "interrupted"
    # another pipeline sharing the database does not list it
    out = cli_in_process("runs", "--config", config, "--set", "pipeline_name=another-pipeline", "--json", cwd=tmp_path)
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
    proc = cli_in_process("runs", "--set", f"metadata_path={md}", cwd=REPO)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "r1" in proc.stdout and "r2" in proc.stdout, proc.stdout
    r2 = proc.stdout[proc.stdout.index("\nr2"):]
    assert "process record unreadable" in r2 and path in r2, proc.stdout
    lines = proc.stderr.strip().splitlines()    # listed, then one error line naming it, exit 1
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ") and path in lines[0], proc.stderr
