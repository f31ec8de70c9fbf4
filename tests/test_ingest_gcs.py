"""Ingestion from gs:// against a real GCS HTTP server on localhost (gcp-storage-emulator)."""
import pytest

from tests.helpers import encode, run_ingest, scene


@pytest.fixture
def gcs(gcs_emulator):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    return storage.Client(project="test-project", credentials=AnonymousCredentials()).bucket(gcs_emulator)


def test_gcs_ingest_matches_local(gcs, make_tree, tmp_path):
    files = {f"real/cam/r{i}.jpg": encode(scene(300 + i)) for i in range(6)}
    files.update({f"synthesized/sd/s{i}.png": encode(scene(400 + i), "PNG") for i in range(6)})
    files["real/cam/r0_copy.jpg"] = files["real/cam/r0.jpg"]
    files["synthesized/sd/bad.png"] = b""
    files["real/cam/odd #1?.jpg"] = encode(scene(450))   # '#', '?' and a space: once unreadable on gs://
    root = make_tree(files)
    for rel, data in files.items():
        gcs.blob(f"images/{rel}").upload_from_string(data)
    local = run_ingest(root, tmp_path / "local")
    remote = run_ingest(f"gs://{gcs.name}/images", tmp_path / "remote")
    for key in ("inputs", "written", "exact_duplicates", "near_duplicates", "quarantined",
                "quarantine_reasons", "written_by_split", "written_by_label"):
        assert local[key] == remote[key], key
    assert local["inputs"] == 15 and local["exact_duplicates"] == 1 and local["quarantine_reasons"] == {"zero_bytes": 1}


def test_cli_writes_and_replaces_a_gs_output_under_a_lock(gcs, make_tree, tmp_path):
    """`synthdetect ingest --output gs://…`: the job writes into a temporary prefix, the output is
    replaced with the summary last, and the lock object (created with a generation-0 precondition)
    refuses a second writer."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from components.ingest.outputs import OutputError, OutputLock, read_members, read_summary
    cli = str(Path(sys.executable).parent / "synthdetect")
    files = {f"real/cam/r{i}.jpg": encode(scene(500 + i)) for i in range(5)}
    files.update({f"synthesized/sd/s{i}.png": encode(scene(600 + i), "PNG") for i in range(5)})
    root = make_tree(files)
    out = f"gs://{gcs.name}/ingested"
    with OutputLock(out):
        busy = subprocess.run([cli, "ingest", "--no-progress", "--input", str(root), "--output", out],
                              capture_output=True, text=True, timeout=300)
        assert busy.returncode == 1 and busy.stderr.startswith("error: another ingestion is writing"), busy.stderr
        with __import__("pytest").raises(OutputError):
            OutputLock(out).acquire()
    for _ in range(2):   # the second run replaces the first output
        r = subprocess.run([cli, "ingest", "--no-progress", "--input", str(root), "--output", out, "--set",
                            "ingest.workers=1"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    s = read_summary(out)
    assert s["inputs"] == 10 and s["accounted_for"] and len(read_members(out)) == 10
    names = sorted(b.name for b in gcs.client.list_blobs(gcs.name))
    assert not any(".tmp-" in n or n.endswith(".lock") or "_ingest_work" in n for n in names), names
    assert sum(n.startswith("ingested/Split-") for n in names) >= 2
    assert json.loads(gcs.blob("ingested/ingest_summary.json").download_as_bytes())["written"] == s["written"]
