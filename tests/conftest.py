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
    """One real `synthdetect run --json` on the bundled sample (32 px, 1 epoch, the gate held open:
    blessed and pushed as v1), shared by the tests that only read what a run leaves (e2e, runs,
    report): {"tmp", "config", "report", "stderr"}. Tests must not change anything under `tmp`."""
    import json

    from tests.helpers import cli, tiny_config
    tmp = tmp_path_factory.mktemp("blessed-run")
    config = tiny_config(tmp, "e2e.yaml")
    out = cli("run", "--runner", "local", "--config", config, "--json", cwd=tmp)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    return {"tmp": tmp, "config": config, "report": json.loads(out.stdout), "stderr": out.stderr}


# xdist (make test runs `-n logical --dist loadgroup`): a module's tests stay on one worker, so its
# module-scoped fixtures are built once; the modules reading the shared blessed run share a worker
# (the session fixture is then built once), and every module that talks to FiftyOne's MongoDB runs on
# one worker.
XDIST_GROUPS = {"test_e2e": "blessed_run", "test_runs": "blessed_run",
                "test_curate": "fiftyone", "test_curate_unit": "fiftyone", "test_curate_holdout": "fiftyone"}


@pytest.hookimpl(tryfirst=True)   # before xdist's own hook, which reads the groups into the node ids
def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(XDIST_GROUPS.get(module, module)))
