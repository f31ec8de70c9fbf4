"""Ingestion at scale: no image bytes in any shuffle, the same output in every Beam mode and
bundle layout, vectorised near-duplicate search."""
import json
import pickle
import random
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import PipelineVisitor

from components.ingest import dedup
from components.ingest.job import build_ingest
from components.ingest.outputs import read_summary
from components.ingest.plan import ScanRow, make_plan
from schemas.config import IngestConfig
from tests.helpers import SPLITS

MAX_BYTES_LEAF = 256  # the longest bytes value allowed in a shuffled element (hashes are hex strings)


def _leaves(x, depth=0):
    if depth > 20:
        return
    if isinstance(x, (bytes, bytearray, memoryview, str)):
        yield x
    elif isinstance(x, dict):
        for k, v in x.items():
            yield from _leaves(k, depth + 1)
            yield from _leaves(v, depth + 1)
    elif isinstance(x, (list, tuple, set, frozenset)):
        for v in x:
            yield from _leaves(v, depth + 1)
    elif hasattr(x, "__dict__"):
        yield from _leaves(vars(x), depth + 1)
    elif hasattr(x, "SerializeToString"):  # a protobuf message (e.g. a tf.Example)
        yield x.SerializeToString()


def _probe(element, label: str, log: str):
    big = [len(v) for v in _leaves(element)
           if isinstance(v, (bytes, bytearray, memoryview)) and len(v) > MAX_BYTES_LEAF]
    images = [v for v in _leaves(element) if isinstance(v, (bytes, bytearray))
              and (bytes(v[:3]) == b"\xff\xd8\xff" or bytes(v[:4]) == b"\x89PNG")]
    with open(log, "a") as f:
        f.write(json.dumps({"step": label, "pickled": len(pickle.dumps(element)), "big_bytes": big,
                            "images": len(images)}) + "\n")
    return element


def watch_shuffles(p: beam.Pipeline, log: str) -> list[str]:
    """Adds a probe on every PCollection that enters a GroupByKey (Reshuffle, ToList, Distinct and
    CoGroupByKey all expand into one) or is read as a side input. Returns the watched step names."""
    watched = []

    class Visitor(PipelineVisitor):
        def visit_transform(self, node):
            if isinstance(node.transform, beam.GroupByKey):
                watched.append((node.full_label, node.inputs[0]))
            for si in node.side_inputs:
                watched.append((node.full_label + " [side input]", si.pvalue))

    p.visit(Visitor())
    for n, (label, pcoll) in enumerate(watched):
        pcoll | f"Probe{n}" >> beam.Map(_probe, label, log)
    return [label for label, _ in watched]


def test_no_image_payload_reaches_a_shuffle_or_side_input(dup_tree, tmp_path):
    root, n = dup_tree
    log = str(tmp_path / "probe.jsonl")
    p = beam.Pipeline(options=PipelineOptions(["--direct_running_mode=in_memory"]))
    build_ingest(p, str(root), str(tmp_path / "out"), IngestConfig(), SPLITS)
    steps = watch_shuffles(p, log)
    p.run().wait_until_finish()
    assert any("Distribute" in s for s in steps) and any("side input" in s for s in steps), steps
    seen = [json.loads(line) for line in Path(log).read_text().splitlines()]
    assert {s["step"] for s in seen} == set(steps)       # every watched step saw elements
    offenders = [s for s in seen if s["big_bytes"] or s["images"]]
    assert not offenders, offenders[:5]
    assert read_summary(str(tmp_path / "out"))["written"] == 25   # and the job did its work


def test_multi_process_output_is_byte_identical_to_in_process(dup_tree, tmp_path):
    root, _ = dup_tree
    opts = IngestConfig()
    for name, args in (("one", ["--direct_running_mode=in_memory"]),
                       ("two", ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])):
        with beam.Pipeline(options=PipelineOptions(args)) as p:
            build_ingest(p, str(root), str(tmp_path / name), opts, SPLITS)
    a, b = tmp_path / "one", tmp_path / "two"
    files = sorted(str(x.relative_to(a)) for x in a.rglob("*") if x.is_file())
    assert files == sorted(str(x.relative_to(b)) for x in b.rglob("*") if x.is_file())
    assert not any("_ingest_work" in f for f in files)       # the spill is gone
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def _rows(n_distinct=300, seed=0):
    rng = random.Random(seed)
    rows = []
    for i in range(n_distinct):
        h = rng.getrandbits(64)
        while abs(h.bit_count() - 32) > 8:
            h = rng.getrandbits(64)
        label = "real" if i % 2 else "synthesized"
        rows.append(ScanRow(f"/d/{label}/{i:05d}.jpg", label, "s", "", "c", f"{rng.getrandbits(256):064x}",
                            f"{rng.getrandbits(256):064x}", h, 100 + i, 50 + i, f"spill-{i % 3}", i * 10, 10,
                            "80" * 48))
    # a planted near duplicate (3 bits flipped) and an exact duplicate of row 0
    near = rows[0]._replace(path="/d/x/near.jpg", sha256="aa" * 32, pixel_sha="bb" * 32, phash=rows[0].phash ^ 0b10101)
    exact = rows[0]._replace(path="/d/x/exact.jpg", sha256="cc" * 32)
    return rows + [near, exact]


def test_plan_depends_on_row_contents_not_on_their_order_or_bundles():
    rows = _rows()
    opts = IngestConfig()
    a = make_plan(rows, [], opts, SPLITS, len(rows))
    shuffled = list(rows)
    random.Random(1).shuffle(shuffled)
    b = make_plan(shuffled, [], opts, SPLITS, len(rows))
    assert list(a.member_lines()) == list(b.member_lines()) and a.summary == b.summary
    assert {k: [r.cluster_id for r in v] for k, v in a.shards.items()} == \
        {k: [r.cluster_id for r in v] for k, v in b.shards.items()}
    m = {json.loads(line)["path"]: json.loads(line) for line in a.member_lines()}
    assert m["/d/x/near.jpg"]["status"] == "near_duplicate" and m["/d/x/exact.jpg"]["status"] == "exact_duplicate"
    assert a.summary["accounted_for"] and a.summary["written"] == 300


def test_vectorised_lsh_finds_planted_pairs_and_only_true_ones():
    rng = np.random.default_rng(3)
    hashes = rng.integers(0, 2 ** 63, size=20000, dtype=np.int64).astype(np.uint64)
    planted = []
    extra = []
    for k in range(300):
        a = int(rng.integers(0, len(hashes)))
        h = int(hashes[a])
        for bit in rng.choice(64, size=int(rng.integers(1, 7)), replace=False):
            h ^= 1 << int(bit)
        extra.append(h)
        planted.append((a, len(hashes) + k))
    allh = np.concatenate([hashes, np.array(extra, dtype=np.uint64)])
    pairs = dedup.near_duplicate_pairs(allh, 6, 32, 16)
    assert all(dedup.hamming(int(allh[i]), int(allh[j])) <= 6 for i, j in pairs)   # verified, never guessed
    roots = dedup.cluster_roots(len(allh), pairs)
    found = sum(roots[a] == roots[b] for a, b in planted)
    assert found >= 0.99 * len(planted)
    # brute force on a slice: LSH misses at most a few true pairs and invents none
    sub = allh[:3000]
    x = sub[:, None] ^ sub[None, :]
    true = {(i, j) for i, j in zip(*np.nonzero(np.triu(dedup.popcount(x.ravel()).reshape(x.shape) <= 6, 1)),
                                   strict=True)}
    got = {tuple(p) for p in dedup.near_duplicate_pairs(sub, 6, 32, 16)}
    assert got <= true


def test_a_large_bucket_of_similar_hashes_is_searched_completely():
    """More than 64 hashes sharing every LSH key (the blockwise path) still yields every close pair."""
    sampled = set(dedup.lsh_positions(4, 8).ravel().tolist())
    free = [63 - b for b in range(64) if b not in sampled]          # bit positions no table looks at
    assert len(free) >= 20
    rng = np.random.default_rng(5)
    base = 0x5555_5555_5555_5555
    hashes = np.array([base ^ sum(1 << int(b) for b in rng.choice(free, size=3, replace=False)) for _ in range(200)],
                      dtype=np.uint64)
    pairs = dedup.near_duplicate_pairs(hashes, 4, 4, 8)
    n = len(hashes)
    x = hashes[:, None] ^ hashes[None, :]
    true = {(i, j) for i, j in zip(*np.nonzero(np.triu(dedup.popcount(x.ravel()).reshape(n, n) <= 4, 1)),
                                   strict=True)}
    assert len(true) > 100
    assert {tuple(p) for p in pairs.tolist()} == true
