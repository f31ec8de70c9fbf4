"""Ingestion from gs:// against a real GCS HTTP server on localhost (gcp-storage-emulator)."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_ingest_beam import SPLITS, encode, run_ingest, scene

BUCKET = "synthdetect-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gcs(tmp_path, monkeypatch):
    port = _free_port()
    exe = str(Path(sys.executable).parent / "gcp-storage-emulator")
    proc = subprocess.Popen([exe, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory",
                             "--default-bucket", BUCKET], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    client = storage.Client(project="test-project", credentials=AnonymousCredentials())
    yield client.bucket(BUCKET)
    proc.terminate()
    proc.wait(10)


def test_gcs_ingest_matches_local(gcs, make_tree, tmp_path):
    files = {f"real/cam/r{i}.jpg": encode(scene(300 + i)) for i in range(6)}
    files.update({f"synthesized/sd/s{i}.png": encode(scene(400 + i), "PNG") for i in range(6)})
    files["real/cam/r0_copy.jpg"] = files["real/cam/r0.jpg"]
    files["synthesized/sd/bad.png"] = b""
    root = make_tree(files)
    for rel, data in files.items():
        gcs.blob(f"images/{rel}").upload_from_string(data)
    local = run_ingest(root, tmp_path / "local")
    remote = run_ingest(f"gs://{BUCKET}/images", tmp_path / "remote")
    for key in ("inputs", "written", "exact_duplicates", "near_duplicates", "quarantined",
                "quarantine_reasons", "written_by_split", "written_by_label"):
        assert local[key] == remote[key], key
    assert local["inputs"] == 14 and local["exact_duplicates"] == 1 and local["quarantine_reasons"] == {"zero_bytes": 1}
