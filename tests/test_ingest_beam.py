"""Ingestion as a Beam pipeline: accounting invariant, deduplication, leak-free splits, determinism."""
import io
import json
from collections import defaultdict
from pathlib import Path

import tensorflow as tf
from PIL import Image

from schemas.config import IngestConfig
from tests.helpers import SPLITS, encode, run_ingest, scene


def members(out_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(out_dir) / "members.jsonl").read_text().splitlines()]


def records(out_dir) -> dict[str, list[tf.train.Example]]:
    out = {}
    for split, _ in SPLITS:
        files = sorted(str(p) for p in Path(out_dir, f"Split-{split}").glob("*.gz"))
        out[split] = [tf.train.Example.FromString(r.numpy())
                      for r in tf.data.TFRecordDataset(files, compression_type="GZIP")] if files else []
    return out


def test_invariant_dedup_and_conflicts(dup_tree, tmp_path):
    root, n = dup_tree
    s = run_ingest(root, tmp_path / "out")
    assert s["inputs"] == n == 32
    assert s["inputs"] == s["written"] + s["exact_duplicates"] + s["near_duplicates"] + s["quarantined"]
    assert s["accounted_for"] is True
    assert (s["exact_duplicates"], s["near_duplicates"]) == (1, 3)
    assert s["quarantine_reasons"] == {"label_conflict": 2, "not_an_image": 1}
    assert s["written"] == 24 + 1
    m = {Path(x["path"]).name if "clash" not in x["path"] else x["path"].split("/data/")[1]: x
         for x in members(tmp_path / "out")}
    base_cluster = {m[k]["cluster_id"] for k in ("base.png", "base_copy.png", "base_q100.jpg",
                                                   "base_small.jpg", "base_q70.jpg")}
    assert len(base_cluster) == 1 and base_cluster != {""}
    assert m["base.png"]["representative"] and m["base.png"]["status"] == "written"  # the largest copy
    assert m["base_copy.png"]["status"] == "exact_duplicate"
    assert {m[k]["status"] for k in ("base_q100.jpg", "base_small.jpg", "base_q70.jpg")} == {"near_duplicate"}
    assert m["real/photos/clash.png"]["reason"] == m["synthesized/sd/clash.png"]["reason"] == "label_conflict"


def test_no_cluster_straddles_splits_and_both_labels_everywhere(dup_tree, tmp_path):
    root, _ = dup_tree
    run_ingest(root, tmp_path / "out")
    recs = records(tmp_path / "out")
    split_of = defaultdict(set)
    for split, exs in recs.items():
        for ex in exs:
            split_of[ex.features.feature["cluster_id"].bytes_list.value[0]].add(split)
    assert split_of and all(len(s) == 1 for s in split_of.values())
    assert sum(len(v) for v in recs.values()) == len(split_of)  # one example per cluster
    for split, exs in recs.items():
        assert {ex.features.feature["label"].bytes_list.value[0] for ex in exs} == {b"real", b"synthesized"}, split
    written = [x for x in members(tmp_path / "out") if x["status"] == "written"]
    assert {x["split"] for x in written} == {"train", "eval"}


def test_same_split_with_format_neutralisation_on_and_off(make_tree, tmp_path):
    """Comparing the raw pipeline with the neutralised one is only fair on the same train/eval
    images. Large JPEGs are decoded differently in the two modes (DCT draft decoding in raw mode),
    so a split keyed on decoded pixels would reshuffle them."""
    files = {f"real/photos/big{i}.jpg": encode(scene(300 + i, size=(1200, 900)), quality=90) for i in range(16)}
    files.update({f"synthesized/sd/s{i}.png": encode(scene(400 + i, size=(512, 512)), "PNG") for i in range(8)})
    root = make_tree(files)
    run_ingest(root, tmp_path / "raw", IngestConfig(neutralize_format=False))
    run_ingest(root, tmp_path / "neutral", IngestConfig(neutralize_format=True))

    def split_by_path(out):
        return {m["path"]: m["split"] for m in members(out) if m["status"] == "written"}

    raw, neutral = split_by_path(tmp_path / "raw"), split_by_path(tmp_path / "neutral")
    assert len(raw) == len(files) and raw == neutral
    assert set(raw.values()) == {"train", "eval"}


def test_rerun_gives_byte_identical_tfrecords(dup_tree, tmp_path):
    root, _ = dup_tree
    run_ingest(root, tmp_path / "a")
    run_ingest(root, tmp_path / "b")
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.gz"))
    assert files_a == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.gz"))
    for rel in files_a + [Path("members.jsonl"), Path("ingest_summary.json")]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_dedup_off_keeps_every_decodable_file(dup_tree, tmp_path):
    root, n = dup_tree
    s = run_ingest(root, tmp_path / "out", IngestConfig(dedup=False))
    assert (s["written"], s["exact_duplicates"], s["near_duplicates"]) == (n - 1, 0, 0)
    assert s["quarantine_reasons"] == {"not_an_image": 1}


def test_curator_exclusions_are_accounted(dup_tree, tmp_path):
    root, n = dup_tree
    fb = tmp_path / "fb.jsonl"
    fb.write_text(json.dumps({"path": str(root / "real/photos/u0.jpg"), "action": "exclude"}) + "\n")
    s = run_ingest(root, tmp_path / "out", IngestConfig(feedback=str(fb)))
    assert s["inputs"] == n and s["accounted_for"]
    assert s["quarantine_reasons"]["curator_excluded"] == 1
    excluded = [x for x in members(tmp_path / "out") if x["reason"] == "curator_excluded"]
    assert [Path(x["path"]).name for x in excluded] == ["u0.jpg"]


def test_rerun_into_the_same_folder_leaves_no_stale_shards(dup_tree, tmp_path):
    root, _ = dup_tree
    out = tmp_path / "out"
    run_ingest(root, out)
    stale = out / "Split-train" / "data_tfrecord-00007-of-00009.gz"
    stale.write_bytes(b"left over from an earlier, larger run")
    run_ingest(root, out)
    assert not stale.exists()


def test_max_side_0_keeps_native_size_through_synthdetect_ingest(make_tree, tmp_path):
    """`ingest.max_side: 0` from the config reaches the Beam ingestion: both labels re-encoded as
    JPEG at their native size (crop mode's input; the default 256 downscales: test_ingest.py)."""
    import subprocess
    import sys
    from tests.conftest import REPO
    files = {"real/p/a.jpg": encode(scene(1, (600, 400)), quality=90),
             "synthesized/s/b.png": encode(scene(2, (512, 512)), "PNG")}
    root = make_tree(files)
    cli = str(Path(sys.executable).parent / "synthdetect")
    out = subprocess.run([cli, "ingest", "--input", str(root), "--output", str(tmp_path / "out"),
                          "--set", "ingest.max_side=0"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    exs = [ex for split in records(tmp_path / "out").values() for ex in split]
    imgs = [Image.open(io.BytesIO(ex.features.feature["image_raw"].bytes_list.value[0])) for ex in exs]
    assert {i.format for i in imgs} == {"JPEG"}
    assert sorted(i.size for i in imgs) == [(512, 512), (600, 400)]
