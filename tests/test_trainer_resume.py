"""Training as a long job (issue 22): a per-epoch checkpoint keyed on the data and the settings, a
killed Trainer resumed at the next epoch, a fresh start when either changed, early stopping's best
epoch, one progress line per epoch. Real trainings at 32 px on the bundled sample, in subprocesses
(a SIGKILL is real)."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


SCRIPT = textwrap.dedent('''
    import json, os, signal, sys, types, logging
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from components.trainer import run_fn as rf
    from pipeline.pipeline import trainer_config
    from schemas.config import PipelineConfig
    tmp, model, kill_after = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stdout)
    if kill_after:   # the kill itself: SIGKILL right after epoch `kill_after` was checkpointed
        original = rf.EpochJournal.on_epoch_end
        def on_epoch_end(self, epoch, logs=None):
            original(self, epoch, logs)
            if epoch + 1 == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
        rf.EpochJournal.on_epoch_end = on_epoch_end
    cfg = PipelineConfig.model_validate({"data": {"input": "."}, "model": {
        "image_size": 32, "batch_size": 4, "weights": "none", "deterministic": True, **model}})
    serving = os.path.join(tmp, "root", "Trainer_baseline", "model", "7", "Format-Serving")
    data = os.path.join(tmp, "data.gz")
    rf.run_fn(types.SimpleNamespace(train_files=[data], eval_files=[data],
              transform_output=os.path.join(tmp, "transform"), serving_model_dir=serving,
              model_run_dir=os.path.join(tmp, "run"), custom_config=trainer_config(cfg, "baseline")))
''')


def train(tmp: Path, model: dict, kill_after: int = 0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, str(tmp), json.dumps(model), str(kill_after)],
                          capture_output=True, text=True, timeout=900, cwd=Path(__file__).resolve().parents[1])


def checkpoints(tmp: Path) -> list[Path]:
    return sorted((tmp / "root" / "Trainer_baseline" / "_checkpoints").glob("*"))


def history(tmp: Path) -> dict:
    path = tmp / "root" / "Trainer_baseline" / "model" / "7" / "Format-Serving" / "assets.extra" / \
        "training_history.json"
    return json.loads(path.read_text())


@pytest.fixture
def data(transformed, tmp_path):
    """The transformed sample in a folder of this test's own (the checkpoint key reads the files)."""
    _, _, src = transformed
    os.symlink(src / "transform", tmp_path / "transform")
    os.symlink(src / "data.gz", tmp_path / "data.gz")
    return tmp_path


def test_a_killed_trainer_resumes_after_another_config_trained_and_reports_its_epochs(data):
    """Three trainings (issue 25: one per behaviour would be five): settings A killed after epoch 1;
    settings B then start from scratch (with early stopping: progress lines, best epoch) and leave A's
    checkpoint alone; A again resumes at epoch 2 with the same inputs."""
    a = {"epochs": 3, "learning_rate": 0.001}
    killed = train(data, a, kill_after=1)
    assert killed.returncode == -9, killed.stderr[-2000:]
    [ckpt] = checkpoints(data)
    first = json.loads((ckpt / "epochs.json").read_text())
    assert len(first) == 1                                   # epoch 1 kept; epoch 2 was lost with the kill

    # another config: from scratch; A's checkpoint is left alone (B's own is removed once B is saved)
    b = train(data, {"epochs": 4, "early_stopping_patience": 1, "learning_rate": 0.0005})
    assert b.returncode == 0, b.stderr[-2000:]
    assert "resuming" not in b.stdout and history(data)["resumed_after_epoch"] == 0
    assert checkpoints(data) == [ckpt]
    lines = [ln.split(": ", 1)[1] for ln in b.stdout.splitlines() if ln.startswith("synthdetect.progress: ")]
    assert lines and all(ln.startswith("Trainer_baseline epoch ") and " loss " in ln and " val AUC " in ln
                         and "ETA" in ln for ln in lines)
    h = history(data)
    aucs = h["history"]["val_auc"]
    assert len(lines) == len(aucs)
    assert h["best_epoch"] == max(range(len(aucs)), key=lambda i: aucs[i]) + 1
    assert h["stopped_early"] == (len(aucs) < 4)

    # A again: resumed after epoch 1
    again = train(data, a)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming baseline" in again.stdout and "after epoch 1" in again.stdout
    h = history(data)
    assert h["resumed_after_epoch"] == 1 and len(h["history"]["loss"]) == 3
    assert h["history"]["loss"][0] == pytest.approx(first[0]["loss"])     # epoch 1 from the first run
    assert [ln for ln in again.stdout.splitlines() if "Trainer_baseline epoch" in ln][0].startswith(
        "synthdetect.progress: Trainer_baseline epoch 2/3")               # it ran epochs 2 and 3 only
    assert not checkpoints(data)                             # removed once the model is saved
