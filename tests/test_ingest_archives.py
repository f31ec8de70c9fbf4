"""Image archives read in place (zip, tar, tar.gz): the same output as the extracted files, manifest
rows through archives, every bad member accounted for, the CIFAKE parts."""
import hashlib
import io
import json
import os
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from components.ingest.images import IngestOptions
from components.ingest.job import build_ingest
from components.ingest.listing import list_inputs
from components.ingest.outputs import read_summary
from tests.conftest import REPO, image_bytes

SPLITS = [("train", 7), ("eval", 3)]
CIFAKE = REPO.parent / "shared" / "data" / "cifake"


def run_ingest(data_input, out_dir, opts=IngestOptions(), multi=False) -> dict:
    args = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"] if multi else \
        ["--direct_running_mode=in_memory"]
    with beam.Pipeline(options=PipelineOptions(args)) as p:
        build_ingest(p, str(data_input), str(out_dir), opts, SPLITS)
    return read_summary(str(out_dir))


def members(out_dir) -> dict[str, dict]:
    return {m["path"]: m for m in map(json.loads, (Path(out_dir) / "members.jsonl").read_text().splitlines())}


def shard_bytes(out_dir) -> dict[str, bytes]:
    return {str(p.relative_to(out_dir)): p.read_bytes() for p in sorted(Path(out_dir).glob("Split-*/*.gz"))}


def write_zip(path: Path, files: dict[str, bytes], stored: set[str] = frozenset()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data, compress_type=zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED)


def write_tar(path: Path, files: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz" if path.name.endswith((".tgz", ".tar.gz")) else "w") as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))


def parts_tree(root: Path) -> dict[str, dict[str, bytes]]:
    """{archive path relative to root: {member: bytes}}: zip (deflated and stored members, a
    subfolder), an exact duplicate across two parts, a broken member, both labels."""
    dup = image_bytes("PNG", size=(48, 40), seed=99)
    parts = {
        "real/photos/part-000.zip": {f"r{i:02d}.jpg": image_bytes(seed=i, size=(64, 48)) for i in range(10)},
        "real/photos/part-001.zip": {**{f"sub/r{i:02d}.png": image_bytes("PNG", seed=i) for i in range(10, 16)},
                                     "dup-a.png": dup},
        "synthesized/sd/part-000.zip": {**{f"s{i:02d}.jpg": image_bytes(seed=i, size=(50, 50)) for i in range(20, 30)},
                                        "broken.jpg": b"not an image"},
        "synthesized/sd/part-001.zip": {f"s{i:02d}.png": image_bytes("PNG", seed=i) for i in range(30, 34)},
    }
    parts["real/photos/part-000.zip"]["dup-b.png"] = dup
    for rel, files in parts.items():
        write_zip(root / rel, files, stored={n for n in files if n.endswith(".png")})
    return parts


def extract_in_place(root: Path, parts: dict[str, dict[str, bytes]]) -> None:
    """Replace every archive by a folder of the same name holding its members (the same paths)."""
    for rel, files in parts.items():
        (root / rel).unlink()
        for name, data in files.items():
            p = root / rel / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)


@pytest.mark.parametrize("neutralize", [True, False])
def test_zip_parts_ingest_to_the_same_shards_as_the_extracted_files(tmp_path, neutralize):
    root = tmp_path / "data"
    parts = parts_tree(root)
    opts = IngestOptions(neutralize_format=neutralize)
    s_zip = run_ingest(root, tmp_path / "from-zip", opts)
    extract_in_place(root, parts)
    s_dir = run_ingest(root, tmp_path / "from-folders", opts)
    n = sum(len(f) for f in parts.values())
    assert s_zip["inputs"] == n and s_zip["accounted_for"] is True
    assert (s_zip["exact_duplicates"], s_zip["quarantine_reasons"]) == (1, {"not_an_image": 1})
    assert s_zip == s_dir
    assert shard_bytes(tmp_path / "from-zip") == shard_bytes(tmp_path / "from-folders")
    assert shard_bytes(tmp_path / "from-zip")
    m = members(tmp_path / "from-zip")
    assert m == members(tmp_path / "from-folders")
    # path = archive/member; label from the enclosing folder, source from the folders (not the part)
    rec = m[f"{root}/real/photos/part-001.zip/sub/r10.png"]
    assert (rec["label"], rec["source"], rec["status"]) == ("real", "photos", "written")


def test_zip_parts_rerun_in_parallel_is_byte_identical(tmp_path):
    root = tmp_path / "data"
    parts_tree(root)
    run_ingest(root, tmp_path / "a", multi=True)
    run_ingest(root, tmp_path / "b", multi=True)
    assert shard_bytes(tmp_path / "a") == shard_bytes(tmp_path / "b")
    assert (tmp_path / "a/members.jsonl").read_bytes() == (tmp_path / "b/members.jsonl").read_bytes()


def test_manifest_rows_through_archives(tmp_path):
    root = tmp_path / "data"
    parts_tree(root)
    (root / "manifest.csv").write_text(
        "path,label,source,generator,content\n"
        "real/photos/part-000.zip/r03.jpg,real,cifar10,none,frog\n"
        "real/photos/part-001.zip/sub/r11.png,real,cifar10,none,truck\n"
        "synthesized/sd/part-000.zip/s21.jpg,synthesized,sd14,sd14,frog\n"
        "synthesized/sd/part-000.zip/nope.jpg,synthesized,sd14,sd14,frog\n"
        "synthesized/sd/part-001.zip,synthesized,sd14,sd14,cat\n"       # a row naming a whole archive
        "../outside.zip/x.jpg,real,x,x,x\n")
    listing = list_inputs(str(root / "manifest.csv"))
    items = {i.path[len(str(root)) + 1:]: i for i in listing.items}
    assert set(items) == {"real/photos/part-000.zip/r03.jpg", "real/photos/part-001.zip/sub/r11.png",
                          "synthesized/sd/part-000.zip/s21.jpg",
                          *(f"synthesized/sd/part-001.zip/s{i}.png" for i in range(30, 34))}
    assert (items["real/photos/part-000.zip/r03.jpg"].source, items["real/photos/part-000.zip/r03.jpg"].content) == \
        ("cifar10", "frog")
    assert items["synthesized/sd/part-001.zip/s31.png"].content == "cat"
    assert sorted((r["path"].rsplit("/", 1)[1], r["reason"]) for r in listing.rejected) == [
        ("nope.jpg", "unreadable_path"), ("x.jpg", "outside_root")]
    s = run_ingest(root / "manifest.csv", tmp_path / "out")
    assert s["inputs"] == 9 and s["accounted_for"] and s["written"] == 7
    m = members(tmp_path / "out")
    assert m[f"{root}/real/photos/part-000.zip/r03.jpg"]["content"] == "frog"


# ------------------------------------------------------------------------------------ CIFAKE
@pytest.fixture
def cifake() -> Path:
    if not (CIFAKE / "manifest.csv").is_file():
        pytest.skip(f"reference data not present at {CIFAKE} (only in the development workspace)")
    return CIFAKE


def cifake_identical_pairs(root: Path) -> tuple[int, int]:
    """(members, members that repeat an earlier member's bytes within the same label) from sha256."""
    n, dups = 0, 0
    for label in ("real", "synthesized"):
        seen = Counter()
        for part in sorted((root / label).glob("*.zip")):
            with zipfile.ZipFile(part) as z:
                for zi in z.infolist():
                    if not zi.is_dir():
                        seen[hashlib.sha256(z.read(zi)).hexdigest()] += 1
        n += sum(seen.values())
        dups += sum(c - 1 for c in seen.values())
    return n, dups


def test_cifake_listing_goes_through_the_zip_parts(cifake):
    listing = list_inputs(str(cifake / "manifest.csv"))
    assert len(listing.items) == 15000 and not listing.rejected
    assert all(i.archive.endswith(".zip") and i.path.startswith(i.archive + "/") for i in listing.items)
    assert Counter(i.label for i in listing.items) == {"real": 7500, "synthesized": 7500}
    # the folder (read through its manifest) is the same listing
    assert len(list_inputs(str(cifake)).items) == 15000


@pytest.mark.slow
def test_cifake_every_member_accounted_for_and_duplicates_found(cifake, tmp_path):
    n, identical = cifake_identical_pairs(cifake)
    assert n == 15000 and identical > 0
    s = run_ingest(cifake / "manifest.csv", tmp_path / "out", multi=True)
    assert s["inputs"] == 15000 and s["accounted_for"] is True
    assert s["exact_duplicates"] >= identical
    assert sum(1 for _ in members(tmp_path / "out")) == 15000


# ------------------------------------------------------------------------------------ TFX ImageExampleGen
def test_example_gen_reads_zip_parts_and_its_cache_follows_the_archives(tmp_path):
    """ImageExampleGen in a TFX pipeline ingests archive members; replacing one archive (same
    names inside) changes the fingerprint, an unchanged archive hits the cache."""
    from ml_metadata.proto import metadata_store_pb2

    from schemas.config import PipelineConfig
    from tests.test_ingest_pipeline import _run, _states
    root = tmp_path / "data"
    n = sum(len(files) for files in parts_tree(root).values())
    cfg = PipelineConfig.model_validate({
        "pipeline_root": str(tmp_path / "root"), "metadata_path": str(tmp_path / "md.sqlite"),
        "data": {"input": str(root)}}).resolved()
    E = metadata_store_pb2.Execution
    _run(cfg)
    _run(cfg)
    assert _states(cfg.metadata_path) == [E.COMPLETE, E.CACHED]
    outs = sorted((tmp_path / "root").glob("**/ingest_summary.json"))
    assert json.loads(outs[0].read_text())["inputs"] == n
    # the same member names, one image changed inside one archive, the archive's size unchanged
    part = root / "synthesized/sd/part-001.zip"
    size = part.stat().st_size
    write_zip(part, {f"s{i:02d}.png": image_bytes("PNG", seed=i + (100 if i == 31 else 0)) for i in range(30, 34)},
              stored={f"s{i:02d}.png" for i in range(30, 34)})
    assert part.stat().st_size == size
    _run(cfg)
    assert _states(cfg.metadata_path) == [E.COMPLETE, E.CACHED, E.COMPLETE]
