"""Held-out sets and leave-one-out in ingestion (issue 14): ingested by the same code, never in
train/eval, duplicates of training images dropped and counted as leaked_into_training."""
import json
from collections import Counter
from pathlib import Path

from components.ingest.job import run_ingest
from components.ingest.listing import resolve_run_inputs
from components.ingest.outputs import read_members
from components.ingest.records import parse_example, read_gzip_tfrecords
from schemas.config import IngestConfig
from tests.helpers import SPLITS, encode, scene

IN_MEMORY = ["--direct_running_mode=in_memory"]


def examples_by_split(out: Path) -> dict[str, list]:
    res = {}
    for d in sorted(out.glob("Split-*")):
        res[d.name[len("Split-"):]] = [parse_example(r) for p in sorted(d.glob("*.gz"))
                                       for r in read_gzip_tfrecords(open(p, "rb"))]
    return res


def feat(ex, key):
    return ex.features.feature[key].bytes_list.value[0].decode()


def test_holdout_set_is_ingested_apart_and_leaks_are_dropped(make_tree, tmp_path):
    train = make_tree({**{f"real/cam/r{i}.jpg": encode(scene(i)) for i in range(8)},
                       **{f"synthesized/sd/s{i}.png": encode(scene(100 + i), "PNG") for i in range(8)}})
    held = tmp_path / "held"
    files = {f"real/other/h{i}.jpg": encode(scene(200 + i)) for i in range(4)}
    files.update({f"synthesized/gan/g{i}.png": encode(scene(300 + i), "PNG") for i in range(4)})
    files["real/other/leak_exact.jpg"] = (train / "real/cam/r0.jpg").read_bytes()                 # byte copy
    files["synthesized/gan/leak_near.jpg"] = encode(scene(100 + 1), quality=70)                 # recompressed
    files["real/other/bad.jpg"] = b"nope"
    for rel, data in files.items():
        (held / rel).parent.mkdir(parents=True, exist_ok=True)
        (held / rel).write_bytes(data)
    listing = resolve_run_inputs(str(train), IngestConfig(), [("unseen", str(held))])
    s = run_ingest(listing, str(tmp_path / "out"), IngestConfig(), SPLITS, IN_MEMORY)
    assert s["accounted_for"] and s["inputs"] == 16 + 11
    h = s["holdout_sets"]["unseen"]
    assert (h["inputs"], h["written"], h["leaked_into_training"], h["quarantined"]) == (11, 8, 2, 1)
    assert h["inputs"] == sum(h[k] for k in ("written", "exact_duplicate", "near_duplicate", "quarantined",
                                             "skipped", "leaked_into_training"))
    members = {Path(m["path"]).name: m for m in read_members(str(tmp_path / "out"))}
    assert members["leak_exact.jpg"]["status"] == members["leak_near.jpg"]["status"] == "leaked_into_training"
    assert members["r0.jpg"]["status"] == "written" and members["s1.png"]["status"] == "written"
    exs = examples_by_split(tmp_path / "out")
    assert sorted(exs) == ["eval", "holdout_unseen", "train"]
    held_paths = {feat(e, "path") for e in exs["holdout_unseen"]}
    assert all(str(held) in p for p in held_paths) and len(held_paths) == 8
    assert not any(str(held) in feat(e, "path") for split in ("train", "eval") for e in exs[split])
    assert {feat(e, "split") for split, es in exs.items() for e in es} == set(exs)
    assert s["written_by_split"]["holdout_unseen"] == {"real": 4, "synthesized": 4}


def test_leave_one_out_moves_a_source_out_of_training(make_tree, tmp_path):
    root = make_tree({**{f"real/cam/r{i}.jpg": encode(scene(i)) for i in range(6)},
                      **{f"real/phone/p{i}.jpg": encode(scene(50 + i)) for i in range(4)},
                      **{f"synthesized/sd/s{i}.png": encode(scene(100 + i), "PNG") for i in range(6)},
                      **{f"synthesized/phone/q{i}.png": encode(scene(150 + i), "PNG") for i in range(4)}})
    leave = {"field": "source", "value": "phone", "name": "left_out"}
    listing = resolve_run_inputs(str(root), IngestConfig(), (), leave)
    s = run_ingest(listing, str(tmp_path / "out"), IngestConfig(), SPLITS, IN_MEMORY)
    assert s["accounted_for"] and s["holdout_sets"]["left_out"]["written"] == 8
    exs = examples_by_split(tmp_path / "out")
    sources = {split: Counter(feat(e, "source") for e in es) for split, es in exs.items()}
    assert "phone" not in sources["train"] and "phone" not in sources["eval"]
    assert sources["holdout_left_out"] == {"phone": 8}
    # the same leave-out in the fingerprint: changing it changes what the pipeline caches on
    other = resolve_run_inputs(str(root), IngestConfig(), (), {**leave, "value": "cam"})
    assert other.fingerprint() != listing.fingerprint()
    # a list of values leaves out a family spanning several sources
    both = resolve_run_inputs(str(root), IngestConfig(), (), {**leave, "value": ["phone", "sd"]})
    assert Counter(it.source for it in both.items if it.holdout == "left_out") == {"phone": 8, "sd": 6}
    assert json.loads((tmp_path / "out" / "ingest_summary.json").read_text())["written_by_label"] == \
        {"real": 6, "synthesized": 6}


def test_a_held_out_set_emptied_by_leaks_still_has_its_split(make_tree, tmp_path):
    """Every held-out image duplicates a training image: the split exists with one empty shard (the
    Evaluator and Transform read every split they are given), and the set counts its leaks."""
    train = make_tree({**{f"real/cam/r{i}.jpg": encode(scene(i)) for i in range(4)},
                       **{f"synthesized/sd/s{i}.png": encode(scene(100 + i), "PNG") for i in range(4)}})
    held = tmp_path / "held"
    (held / "real" / "x").mkdir(parents=True)
    (held / "real" / "x" / "copy.jpg").write_bytes((train / "real/cam/r1.jpg").read_bytes())
    listing = resolve_run_inputs(str(train), IngestConfig(), [("gone", str(held))])
    s = run_ingest(listing, str(tmp_path / "out"), IngestConfig(), SPLITS, IN_MEMORY)
    assert s["accounted_for"] and s["holdout_sets"]["gone"]["leaked_into_training"] == 1
    assert s["holdout_sets"]["gone"]["written"] == 0
    shards = sorted((tmp_path / "out" / "Split-holdout_gone").glob("*.gz"))
    assert len(shards) == 1 and examples_by_split(tmp_path / "out")["holdout_gone"] == []
