import io
import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
EVAL_V1 = REPO.parent / "shared" / "data" / "eval-v1"



@pytest.fixture
def eval_v1() -> Path:
    if not (EVAL_V1 / "manifest.csv").is_file():
        pytest.skip(f"reference data not present at {EVAL_V1} (only in the development workspace)")
    return EVAL_V1


def image_bytes(fmt: str = "JPEG", size=(40, 30), mode: str = "RGB", seed: int = 0, **save) -> bytes:
    """A small noisy image encoded in `fmt` (content differs by seed)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


@pytest.fixture
def make_tree(tmp_path):
    """Writes {relative path: bytes} under tmp_path/data and returns the folder."""
    def _make(files: dict[str, bytes]) -> Path:
        root = tmp_path / "data"
        for rel, data in files.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        return root
    return _make


@pytest.fixture
def gcs_emulator(monkeypatch):
    """A real GCS HTTP server on localhost (gcp-storage-emulator, in memory) with one bucket named
    `synthdetect-test`; STORAGE_EMULATOR_HOST points the google-cloud-storage client (and Beam's
    gs:// filesystem) at it. Yields the bucket name."""
    import socket
    import subprocess
    import sys
    import time

    bucket = "synthdetect-test"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = str(Path(sys.executable).parent / "gcp-storage-emulator")
    proc = subprocess.Popen([exe, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory",
                             "--default-bucket", bucket], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("GCS emulator did not start")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test-project")
    yield bucket
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MB tmpfs (needs root, as in CI and on the development machines); `fill(leave)` fills it
    up to `leave` free bytes."""
    import subprocess
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill_disk(mnt: Path, leave: int = 0) -> None:
    """Fills the filesystem of `mnt` with a file `filler`, leaving about `leave` bytes free."""
    st = os.statvfs(mnt)
    (mnt / "filler").write_bytes(b"\0" * max(st.f_bavail * st.f_frsize - leave, 0))
    if not leave:   # the last partial page
        try:
            with open(mnt / "filler2", "wb") as f:
                while True:
                    f.write(b"\0" * 512)
                    f.flush()
        except OSError:
            pass


HOG_SECONDS = 900   # a bound: the hog stops by itself even if the test process is killed


@pytest.fixture
def cpu_hog():
    """Two busy processes beside the test (as on a shared CI runner or a laptop that is training),
    each ending by itself after HOG_SECONDS at the latest; stopped (by pid) when the test ends."""
    import subprocess
    import sys
    code = f"import time\nend = time.time() + {HOG_SECONDS}\nwhile time.time() < end:\n    pass\n"
    # each in a session of its own, as two independent jobs on the machine would be: the kernel's
    # autogroup scheduler shares the CPU between sessions, so hogs inside the test's session would
    # compete only with the test runner itself (and a prioritised test session would starve the App)
    hogs = [subprocess.Popen([sys.executable, "-c", code], start_new_session=True) for _ in range(2)]
    try:
        yield hogs
    finally:
        for h in hogs:
            h.kill()
            h.wait()


@pytest.fixture(scope="session")
def blessed_run(tmp_path_factory) -> dict:
    """One real `synthdetect run --json` (32 px, 1 epoch, no augmentation, the gate held open: blessed
    and pushed as v1) on the bundled sample plus the curation cases (tests.helpers.make_curation_data:
    an exact and a near duplicate, an empty file, a file that is not an image, a planted label error),
    shared by the tests that read what a run leaves (e2e, runs, curate): {"tmp", "config", "data",
    "report", "stderr"}. Tests must not change what the run wrote under `tmp` (new files beside it are fine)."""
    import json

    import yaml

    from tests.helpers import cli, make_curation_data, tiny_config
    tmp = tmp_path_factory.mktemp("blessed-run")
    config = tiny_config(tmp, "e2e.yaml", data=tmp / "data", augment=False)
    # the split order as the run reads it (the written config's), for the planted label error's split
    data = make_curation_data(tmp, list(yaml.safe_load(config.read_text())["data"]["split_ratios"].items()))
    out = cli("run", "--runner", "local", "--config", config, "--json", cwd=tmp)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    return {"tmp": tmp, "config": config, "data": data, "report": json.loads(out.stdout), "stderr": out.stderr}


@pytest.fixture(scope="session")
def vertex_spec(tmp_path_factory) -> Path:
    """configs/vertex.yaml compiled once per test session by `synthdetect compile` (a TFX import and a
    compile: ~30 s), shared by every module and xdist worker that reads it (a file lock in the session's
    shared temp folder: the first worker compiles, the others wait and reuse). Read-only: copy to change."""
    import subprocess

    from filelock import FileLock

    from tests.helpers import CLI
    base = tmp_path_factory.getbasetemp()   # under xdist, one folder per worker in the session's folder
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out = shared / "vertex-spec" / "pipeline.json"
    with FileLock(str(shared / "vertex-spec.lock")):
        if not out.is_file():
            out.parent.mkdir(exist_ok=True)
            r = subprocess.run([CLI, "compile", "--config", str(REPO / "configs" / "vertex.yaml"), "--out",
                                str(out.with_suffix(".tmp"))], capture_output=True, text=True, timeout=900, cwd=REPO)
            assert r.returncode == 0, r.stderr[-3000:]
            assert "Traceback" not in r.stderr
            out.with_suffix(".tmp").replace(out)
    return out


# xdist (make test runs `-n logical --dist loadgroup`): a module's tests stay on one worker, so its
# module-scoped fixtures are built once; the modules reading the shared blessed run (e2e, runs, curate)
# share a worker (the session fixture is then built once), and every module that talks to FiftyOne's
# MongoDB runs on that worker too.
XDIST_GROUPS = {"test_e2e": "blessed_run", "test_runs": "blessed_run", "test_curate": "blessed_run",
                "test_curate_unit": "blessed_run", "test_curate_holdout": "blessed_run"}


# The longest groups (a few minutes each on 2 cores: whole pipeline runs, trainings), handed out
# first: xdist gives the workers the groups in collection order, and one of these collected last
# would run alone while the other workers idle (longest-first keeps the suite's time near its
# total divided by the workers).
LONGEST_FIRST = ("blessed_run", "test_runs_interrupted", "test_champion", "test_trainer", "test_trainer_resume")


@pytest.hookimpl(tryfirst=True)   # before xdist's own hook, which reads the groups into the node ids
def pytest_collection_modifyitems(config, items):
    def group(item) -> str:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else item.nodeid.split("::")[0]
        return XDIST_GROUPS.get(module, module)
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
    rank = {g: i for i, g in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(group(item), len(rank)))   # stable: each module's order kept


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    """A real TFT transform graph and GZIP TFRecords of transformed examples of the bundled sample
    (tests.tiny_models.transform_sample): (TFTransformOutput, records path, folder)."""
    from tests.tiny_models import transform_sample
    return transform_sample(tmp_path_factory.mktemp("tft"))


# a folder with exact and near duplicates, a label clash and a broken file (ingestion tests)
@pytest.fixture
def dup_tree(make_tree):
    """(folder, number of files): 12 + 12 distinct images, an exact duplicate, three near duplicates,
    one picture under both labels, a broken PNG."""
    from tests.helpers import encode, scene
    base = scene(1)
    files = {f"real/photos/u{i}.jpg": encode(scene(100 + i)) for i in range(12)}
    files.update({f"synthesized/sd/s{i}.png": encode(scene(200 + i), "PNG") for i in range(12)})
    files.update({
        "real/photos/base.png": encode(base, "PNG"),
        "real/photos/base_copy.png": encode(base, "PNG"),                    # exact: same pixels
        "real/photos/base_q100.jpg": encode(base, quality=100),               # near: JPEG changes pixels
        "real/photos/base_small.jpg": encode(base.resize((144, 108)), quality=95),  # near: resized by 10%
        "real/photos/base_q70.jpg": encode(base, quality=70),                 # near: recompressed
        "real/photos/clash.png": encode(scene(7), "PNG"),                     # same pixels, both labels
        "synthesized/sd/clash.png": encode(scene(7), "PNG"),
        "synthesized/sd/broken.png": b"\x89PNG\r\n\x1a\n broken",
    })
    return make_tree(files), len(files)
