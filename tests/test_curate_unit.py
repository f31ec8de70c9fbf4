"""`synthdetect curate` pieces that need no pipeline run: feedback export from tags, accounting checks,
and the one-line error when MongoDB cannot be reached. Real FiftyOne + the bundled mongod, no mocks."""
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO

os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
CLI = str(Path(sys.executable).parent / "synthdetect")


@pytest.fixture
def tiny_dataset(tmp_path):
    import fiftyone as fo

    from components.curation.app import ensure_database
    ensure_database()
    ds = fo.Dataset(f"synthdetect-test-unit-{uuid.uuid4().hex[:8]}")
    paths = [str(tmp_path / f"img{i}.jpg") for i in range(5)]
    ds.add_samples([fo.Sample(filepath=p, path=p, ground_truth=fo.Classification(label="real")) for p in paths])
    yield ds, paths
    ds.delete()


def _tag(ds, path, *tags):
    from fiftyone import ViewField as F
    ds.match(F("path") == path).tag_samples(list(tags))


def test_feedback_export_from_tags(tiny_dataset, tmp_path):
    from components.curation.feedback import export_feedback
    ds, paths = tiny_dataset
    _tag(ds, paths[3], "exclude")
    _tag(ds, paths[1], "relabel:synthesized")
    _tag(ds, paths[2], "exclude", "relabel:synthesized")   # exclude wins
    _tag(ds, paths[0], "quarantined", "false_positive")   # managed tags are not decisions
    out = tmp_path / "fb" / "feedback.jsonl"
    res = export_feedback(ds, str(out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [{"path": paths[1], "action": "relabel", "label": "synthesized"},
                    {"path": paths[2], "action": "exclude"},
                    {"path": paths[3], "action": "exclude"}]
    assert (res.excluded, res.relabeled, res.both) == (2, 1, 1)
    # the file is what ingestion reads
    from components.ingest.images import read_feedback
    assert set(read_feedback(str(out))) == {paths[1], paths[2], paths[3]}


def test_feedback_rejects_bad_relabel_tags(tiny_dataset, tmp_path):
    from components.curation.feedback import export_feedback
    from components.curation.members import CurationError
    ds, paths = tiny_dataset
    _tag(ds, paths[0], "relabel:fake")
    _tag(ds, paths[1], "relabel:real", "relabel:synthesized")
    with pytest.raises(CurationError, match="2 samples have an invalid or conflicting relabel tag"):
        export_feedback(ds, str(tmp_path / "fb.jsonl"))
    assert not (tmp_path / "fb.jsonl").exists()


def test_accounting_mismatch_is_reported():
    from components.curation.members import CurationError, check_accounting
    members = [{"path": "a", "status": "written"}, {"path": "b", "status": "quarantined"}]
    check_accounting(members, {"inputs": 2, "written": 1, "quarantined": 1})
    with pytest.raises(CurationError, match="1 written members but written=2"):
        check_accounting(members, {"inputs": 2, "written": 2, "quarantined": 1})


def test_unreachable_mongodb_is_one_line_error(tmp_path):
    env = {**os.environ, "FIFTYONE_DATABASE_URI": "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=1500",
           "FIFTYONE_DO_NOT_TRACK": "true"}
    out = subprocess.run([CLI, "curate", "--config", str(REPO / "configs" / "local.yaml"),
                          "--examples", str(tmp_path)], capture_output=True, text=True, timeout=300,
                         cwd=REPO, env=env)
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: cannot start or reach the MongoDB at FIFTYONE_DATABASE_URI"), out.stderr
    assert "Traceback" not in out.stderr


def test_missing_mongod_library_hint_names_libssl_and_uri():
    from components.curation.app import MONGO_HINT
    assert "libssl1.1" in MONGO_HINT and "FIFTYONE_DATABASE_URI" in MONGO_HINT


def test_curation_media_cache_honours_synthdetect_cache(monkeypatch, tmp_path):
    """gs:// images for the App go into the one cache that predict's models use."""
    from components.cache import cache_dir
    from components.curation.members import default_cache_dir
    monkeypatch.setenv("SYNTHDETECT_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == str(tmp_path / "c" / "media") == str(cache_dir("media"))
    monkeypatch.delenv("SYNTHDETECT_CACHE")
    assert default_cache_dir() == os.path.expanduser("~/.cache/synthdetect/media")
