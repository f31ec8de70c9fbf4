"""Google Cloud credentials (issue 26.2 and the credentials tracebacks of issue 28): a dry run never
asks for them, and every command that needs them and has none stops at once with one line, instead of
waiting on google-auth's metadata-server probe (seconds per attempt, three attempts, for every call)
and ending in a traceback.

The metadata server here is a real TCP server that accepts connections and never answers (what a
network that drops the packets, or a firewalled 169.254.169.254, looks like); it records how long each
client waited on it. GCS calls go to the real GCS emulator, which needs no credentials."""
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import REPO
from tests.helpers import CLI

VERTEX = REPO / "configs" / "vertex.yaml"
ONE_LINE = ("error: no Google Cloud credentials: run gcloud auth application-default login or set "
            "GOOGLE_APPLICATION_CREDENTIALS")
PROBE_BUDGET_S = 2.5   # total time a command may spend waiting on the metadata server


class SilentMetadataServer:
    """Accepts TCP connections and never answers; `waited` = seconds each client held its connection."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.waited: list[float] = []
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self._open.append(conn)
            threading.Thread(target=self._hold, args=(conn, time.monotonic()), daemon=True).start()

    def _hold(self, conn, t0):
        conn.settimeout(600)
        try:
            while conn.recv(4096):   # the request; no reply, ever
                pass
        except OSError:
            pass
        self.waited.append(time.monotonic() - t0)

    def close(self):
        self._stop.set()
        for c in self._open:
            c.close()
        self.sock.close()


@pytest.fixture
def metadata():
    server = SilentMetadataServer()
    yield server
    server.close()


def no_credentials_env(tmp_path, metadata, **extra) -> dict:
    """No key file, an empty gcloud config, a metadata server that never answers (nothing disabled
    through google-auth's own switches: the command must decide by itself)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GOOGLE_", "CLOUDSDK_", "GCE_", "STORAGE_EMULATOR")) and k != "NO_GCE_CHECK"}
    env.update(CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), HOME=str(tmp_path / "home"), TF_USE_LEGACY_KERAS="1",
               GCE_METADATA_HOST=f"127.0.0.1:{metadata.port}", GCE_METADATA_IP=f"127.0.0.1:{metadata.port}",
               **extra)
    return env


def _cli(*args, env, cwd):
    t0 = time.monotonic()
    r = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=600, env=env, cwd=cwd)
    return r, time.monotonic() - t0


def _waited(metadata) -> float:
    time.sleep(0.3)   # the holder threads note the closed connections
    return sum(metadata.waited)


def assert_one_line(r, metadata):
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr + r.stdout
    assert r.stderr.strip().splitlines() == [ONE_LINE], r.stderr[-3000:]
    assert _waited(metadata) <= PROBE_BUDGET_S, f"waited {metadata.waited} s on the metadata server"


@pytest.fixture
def spec(vertex_spec):
    return vertex_spec


@pytest.mark.parametrize("command", [("submit",), ("schedule", "--cron", "0 3 * * 1")])
def test_a_dry_run_never_asks_for_credentials(spec, tmp_path, metadata, command):
    r, _ = _cli(*command, "--config", VERTEX, "--spec", spec, "--dry-run", env=no_credentials_env(tmp_path, metadata),
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert metadata.waited == [] and _waited(metadata) == 0, f"the dry run asked the metadata server: {metadata.waited}"


@pytest.mark.parametrize("args", [("submit",), ("schedule", "--cron", "0 3 * * 1"), ("runs",),
                                  ("runs", "show", "latest")])
def test_cloud_commands_without_credentials_stop_at_once_with_one_line(spec, tmp_path, metadata, args):
    extra = ("--spec", spec) if args[0] in ("submit", "schedule") else ()
    r, _ = _cli(args[0], "--config", VERTEX, *args[1:], *extra, env=no_credentials_env(tmp_path, metadata),
                cwd=tmp_path)
    assert_one_line(r, metadata)


@pytest.mark.parametrize("args", [("registry", "list", "--registry", "gs://no-such-bucket-synthdetect/reg"),
                                  ("registry", "show", "latest", "--registry", "gs://no-such-bucket-synthdetect/reg"),
                                  ("registry", "promote", "v1", "--alias", "production",
                                   "--registry", "gs://no-such-bucket-synthdetect/reg"),
                                  ("predict", "--model", "registry:production",
                                   "--registry", "gs://no-such-bucket-synthdetect/reg", "IMAGE"),
                                  ("predict", "--model", "gs://no-such-bucket-synthdetect/model", "IMAGE")])
def test_gcs_registry_and_model_without_credentials_are_one_line(tmp_path, metadata, args):
    image = REPO / "data" / "sample" / "real" / "imagenet" / "n01440764_tench.JPEG"
    args = [str(image) if a == "IMAGE" else a for a in args]
    r, _ = _cli(*args, env=no_credentials_env(tmp_path, metadata), cwd=tmp_path)
    assert_one_line(r, metadata)


def test_the_gcs_emulator_needs_no_credentials(tmp_path, metadata, gcs_emulator):
    """STORAGE_EMULATOR_HOST (the tests' real GCS server): no credentials asked, the registry is read."""
    env = no_credentials_env(tmp_path, metadata, STORAGE_EMULATOR_HOST=os.environ["STORAGE_EMULATOR_HOST"],
                             GOOGLE_CLOUD_PROJECT="test-project")
    r, _ = _cli("registry", "list", "--registry", f"gs://{gcs_emulator}/empty-registry", env=env, cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "no versions" in r.stdout
    assert metadata.waited == []


BEAM_ON_EMULATOR = '''
import sys
import google.auth
asked = []
real_default = google.auth.default
def default(*args, **kwargs):
    asked.append(1)
    return real_default(*args, **kwargs)
google.auth.default = default
import components.ingest.job  # the ingestion job's module: every process running it, workers too
from apache_beam.io.filesystems import FileSystems
with FileSystems.create(sys.argv[1]) as f:
    f.write(b"written through Beam")
print(len(asked), FileSystems.exists(sys.argv[1]))
'''


def test_beam_on_the_gcs_emulator_connects_without_looking_for_credentials(tmp_path, gcs_emulator):
    """Beam's gs:// filesystem asked google-auth for credentials five times, with back-off (about 24 s in
    every process), before it connected anonymously; on the emulator it now connects at once."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_APPLICATION", "CLOUDSDK_"))}
    env.update(CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), NO_GCE_CHECK="true")
    r = subprocess.run([sys.executable, "-c", BEAM_ON_EMULATOR, f"gs://{gcs_emulator}/beam/object.txt"],
                       capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["0", "True"], r.stdout
    from google.cloud import storage
    blob = storage.Client().bucket(gcs_emulator).blob("beam/object.txt")
    assert blob.download_as_bytes() == b"written through Beam"
