"""`synthdetect curate` on an ingestion output with a held-out set (issue 14): held-out samples carry
their set and the tag `holdout`, get predictions like the training data, and the held-out duplicates of
training images are counted (status leaked_into_training). Real ingestion, FiftyOne and mongod."""
import os
import uuid
from pathlib import Path


from components.ingest.job import run_ingest
from components.ingest.listing import resolve_run_inputs
from schemas.config import IngestConfig
from tests.helpers import SPLITS, encode, scene
from tests.tiny_models import tiny_model

os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")


def test_held_out_samples_are_tagged_and_scored(make_tree, tmp_path):
    import fiftyone as fo
    from fiftyone import ViewField as F

    from components.curation.app import ensure_database
    from components.curation.dataset import build_dataset
    train = make_tree({**{f"real/cam/r{i}.jpg": encode(scene(i)) for i in range(6)},
                       **{f"synthesized/sd/s{i}.png": encode(scene(100 + i), "PNG") for i in range(6)}})
    held = tmp_path / "held"
    files = {f"real/other/h{i}.jpg": encode(scene(200 + i)) for i in range(3)}
    files.update({f"synthesized/gan/g{i}.png": encode(scene(300 + i), "PNG") for i in range(3)})
    files["real/other/leak.jpg"] = (train / "real/cam/r0.jpg").read_bytes()
    for rel, data in files.items():
        (held / rel).parent.mkdir(parents=True, exist_ok=True)
        (held / rel).write_bytes(data)
    out = tmp_path / "out"
    listing = resolve_run_inputs(str(train), IngestConfig(), [("unseen", str(held))])
    summary = run_ingest(listing, str(out), IngestConfig(), SPLITS, ["--direct_running_mode=in_memory"])
    assert summary["holdout_sets"]["unseen"]["written"] == 6

    ensure_database()
    name = f"synthdetect-test-holdout-{uuid.uuid4().hex[:8]}"
    model = tiny_model(tmp_path / "model", "good")
    try:
        res = build_dataset(name, "test", str(out), model_dir=str(model), threshold=0.5)
        ds = fo.load_dataset(name)
        assert res.samples == len(ds) == 12 + 7
        assert res.by_status["leaked_into_training"] == 1 and res.by_status["written"] == 18
        tagged = ds.match_tags("holdout")
        assert len(tagged) == 7 and set(tagged.values("holdout")) == {"unseen"}
        assert all(str(held) in Path(p).as_posix() for p in tagged.values("path"))
        assert len(ds.match(F("holdout") == "")) == 12 and not len(ds.match_tags("holdout").match(F("holdout") == ""))
        written = tagged.match(F("status") == "written")
        assert set(written.values("split")) == {"holdout_unseen"}
        assert None not in written.values("p_synthesized") and len(written.exists("prediction")) == 6
        assert tagged.match(F("status") == "leaked_into_training").first().path.endswith("leak.jpg")
        assert res.views["holdout"] == 7
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
