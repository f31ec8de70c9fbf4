"""What many test modules share: the CLI, a tiny pipeline config, the release gate held open, the shared
run's data."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from components.ingest.outputs import read_members, read_summary
from components.ingest.records import read_gzip_tfrecords
from schemas.config import IngestConfig

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


# images and an in-process ingestion
SPLITS = [("train", 7), ("eval", 3)]


def scene(seed: int, size=(160, 120)) -> Image.Image:
    """A smooth random picture (low-frequency content, like a photo at thumbnail scale)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, size=(6, 8, 3), dtype=np.uint8)
    return Image.fromarray(small, "RGB").resize(size, Image.BICUBIC)


def encode(img: Image.Image, fmt="JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def run_ingest(data_input, out_dir, opts=None) -> dict:
    """`data_input` ingested into `out_dir` by the Beam job, in this process; the summary."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from components.ingest.job import build_ingest
    opts = opts or IngestConfig()
    with beam.Pipeline(options=PipelineOptions(["--direct_running_mode=in_memory"])) as p:
        build_ingest(p, str(data_input), str(out_dir), opts, SPLITS)
    return read_summary(str(out_dir))


# ingestion outputs
def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


def tree(root: Path, n: int = 6, seed: int = 0) -> Path:
    for i in range(n):
        for label, fmt in (("real", "JPEG"), ("synthesized", "PNG")):
            p = root / label / "src" / f"{label[0]}{seed}_{i}.{'jpg' if fmt == 'JPEG' else 'png'}"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(encode(scene(seed * 1000 + i * 2 + (label == "real")), fmt))
    return root


def shard_records(out: Path) -> int:
    return sum(len(list(read_gzip_tfrecords(open(p, "rb")))) for p in out.glob("Split-*/*.gz"))


def assert_consistent(out: Path) -> dict:
    """A complete output: the summary's counts match the shards and members.jsonl."""
    s = read_summary(str(out))
    members = read_members(str(out))
    assert s["accounted_for"] and s["inputs"] == len(members)
    assert shard_records(out) == s["written"] == sum(m["status"] == "written" for m in members)
    assert not list(out.glob("_ingest_work"))
    return s


# archives
def write_zip(path: Path, files: dict[str, bytes], stored: set[str] = frozenset()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data, compress_type=zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED)


def write_tar(path: Path, files: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz" if path.name.endswith((".tgz", ".tar.gz")) else "w") as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))


# a pipeline of ImageExampleGen alone
def run_example_gen(cfg) -> None:
    """A pipeline of ImageExampleGen alone (LocalDagRunner, cache on), run once."""
    from tfx import v1 as tfx

    from components.ingest.component import make_example_gen
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="ingest-cache-test", pipeline_root=cfg.pipeline_root, components=[make_example_gen(cfg)],
        enable_cache=True, beam_pipeline_args=list(cfg.beam_args),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(cfg.metadata_path)))


def execution_states(md: str) -> list[int]:
    """The ML Metadata executions' states, oldest first."""
    from pipeline.artifacts import open_store
    store = open_store(md)
    return [e.last_known_state for e in sorted(store.get_executions(), key=lambda e: e.id)]


# no Google Cloud credentials anywhere
def no_adc_env(tmp_path) -> dict:
    """No Application Default Credentials anywhere: no key file, an empty gcloud config, no metadata server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "CLOUDSDK_", "GCE_"))}
    env.update(CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), HOME=str(tmp_path / "home"),
               GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9", NO_GCE_CHECK="True")
    return env


# stopping a command started in its own session (start_new_session=True)
def stop_session(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM to `proc` if it still runs, then up to `timeout` s for it to end; after that its whole
    process group is SIGKILLed."""
    import signal
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
