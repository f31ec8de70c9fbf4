"""Ingestion from gs:// against a real GCS HTTP server on localhost (gcp-storage-emulator)."""
import pytest

from tests.test_ingest_beam import encode, run_ingest, scene


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
    root = make_tree(files)
    for rel, data in files.items():
        gcs.blob(f"images/{rel}").upload_from_string(data)
    local = run_ingest(root, tmp_path / "local")
    remote = run_ingest(f"gs://{gcs.name}/images", tmp_path / "remote")
    for key in ("inputs", "written", "exact_duplicates", "near_duplicates", "quarantined",
                "quarantine_reasons", "written_by_split", "written_by_label"):
        assert local[key] == remote[key], key
    assert local["inputs"] == 14 and local["exact_duplicates"] == 1 and local["quarantine_reasons"] == {"zero_bytes": 1}
