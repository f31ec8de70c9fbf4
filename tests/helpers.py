"""What many test modules share: the CLI, a tiny pipeline config, the release gate held open, the shared
run's data."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
CLI = str(Path(sys.executable).parent / "synthdetect")

# thresholds every tiny model clears: the run is blessed and pushed whatever 1 epoch at 32 px learns
OPEN_GATE = {"min_accuracy": 0.0, "min_auc": 0.0, "min_accuracy_gain": -1.0, "min_auc_gain": -1.0,
             "max_robustness_drop": 1.0}


def cli(*args, cwd: Path | str, timeout: float = 1800, env: dict | None = None) -> subprocess.CompletedProcess:
    """`synthdetect ARGS…` in `cwd`, output captured as text."""
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=env)


def tiny_config(tmp: Path, name: str = "pipeline.yaml", data: Path | str = SAMPLE, thresholds: dict | None = None,
                evaluation: dict | None = None, **model) -> Path:
    """configs/local.yaml with every output under `tmp`, `data` as input, 32 px, 1 epoch, no
    pretrained weights, deterministic; `model` overrides model settings (these defaults too),
    `evaluation` replaces the evaluation section. Returns the written path."""
    cfg = yaml.safe_load((REPO / "configs" / "local.yaml").read_text())
    cfg.update(pipeline_root=str(tmp / "root"), metadata_path=str(tmp / "mlmd.sqlite"),
               registry=str(tmp / "registry"), thresholds=dict(OPEN_GATE if thresholds is None else thresholds))
    if evaluation is not None:
        cfg["evaluation"] = evaluation
    cfg["data"]["input"] = str(data)
    cfg["model"].update({"image_size": 32, "epochs": 1, "batch_size": 16, "weights": "none", "deterministic": True,
                         **model})
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg))
    return path


# The shared run's data (tests/conftest.py blessed_run; curated by tests/test_curate.py)
TENCH = "real/imagenet/n01440764_tench.JPEG"
# The planted label error: a real photo (mirrored, so no duplicate of its source) labelled synthesized.
MISLABELLED_FROM = "real/imagenet/n02096177_cairn.JPEG"
MISLABELLED = "real/extra/mislabelled_photo.jpg"


def make_curation_data(root: Path, split_buckets: list) -> Path:
    """data/sample plus an exact duplicate, a near duplicate (smaller re-encode), an empty file, a
    file that is not an image and a real photo labelled synthesized (in the eval split of `split_buckets`,
    the config's split ratios), all listed in the folder's manifest."""
    data = root / "data"
    shutil.copytree(SAMPLE, data)
    extra = data / "real" / "extra"
    extra.mkdir()
    shutil.copy(data / TENCH, extra / "tench_copy.JPEG")
    with Image.open(data / TENCH) as im:
        im.convert("RGB").resize((im.width * 9 // 10, im.height * 9 // 10), Image.LANCZOS).save(
            extra / "tench_smaller.jpg", "JPEG", quality=90)
    (extra / "empty.jpg").write_bytes(b"")
    (extra / "notes.png").write_bytes(b"%PDF-1.4 not an image")
    with open(data / "manifest.csv", "a") as f:
        for name in ("tench_copy.JPEG", "tench_smaller.jpg", "empty.jpg", "notes.png"):
            f.write(f"real/extra/{name},real,extra,,animals,,,,\n")
        f.write(f"{MISLABELLED},synthesized,extra,,animals,,,,\n")
    plant_mislabelled(data, split_buckets)
    return data


def plant_mislabelled(data: Path, split_buckets: list) -> None:
    """A real photo mirrored (no duplicate for ingestion: its hashes are not mirror-invariant) and
    labelled synthesized (the manifest line is written by make_curation_data), in the eval split, so the model
    never trains on the wrong label. The split is the hash of the file's bytes (in the config's split
    order), so the JPEG quality is chosen for it."""
    import hashlib
    import io

    from components.ingest.dedup import split_for
    with Image.open(data / MISLABELLED_FROM) as im:
        mirrored = im.convert("RGB").transpose(Image.FLIP_LEFT_RIGHT)
    for quality in range(95, 70, -1):
        buf = io.BytesIO()
        mirrored.save(buf, "JPEG", quality=quality)
        if split_for(hashlib.sha256(buf.getvalue()).hexdigest(), split_buckets) == "eval":
            (data / MISLABELLED).write_bytes(buf.getvalue())
            return
    raise AssertionError("no JPEG quality puts the planted image in the eval split")


def cli_in_process(*args, cwd: Path | str = REPO) -> subprocess.CompletedProcess:
    """`synthdetect ARGS…` in this process (click's CliRunner), for the read-only commands (`runs`,
    `report`): no new interpreter importing TensorFlow/TFMA again (10-30 s a call on 2 cores). The exit
    code, stdout and stderr as `cli()` gives them; an uncaught exception fails the test with its traceback."""
    import os

    from click.testing import CliRunner

    from pipeline.cli import main
    before = os.getcwd()
    os.chdir(cwd)
    try:
        r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(["synthdetect", *map(str, args)], r.exit_code, r.stdout, r.stderr)
