"""Image archives read in place (zip, tar, tar.gz): the same output as the extracted files, manifest
rows through archives, every bad member accounted for, the CIFAKE parts."""
import hashlib
import io
import json
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from components.ingest.job import build_ingest
from components.ingest.listing import list_inputs
from components.ingest.outputs import read_summary
from schemas.config import IngestConfig
from tests.conftest import REPO, image_bytes
from tests.helpers import write_tar, write_zip

SPLITS = [("train", 7), ("eval", 3)]
CIFAKE = REPO.parent / "shared" / "data" / "cifake"


def run_ingest(data_input, out_dir, opts=None, multi=False) -> dict:
    opts = opts or IngestConfig()
    args = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"] if multi else \
        ["--direct_running_mode=in_memory"]
    with beam.Pipeline(options=PipelineOptions(args)) as p:
        build_ingest(p, str(data_input), str(out_dir), opts, SPLITS)
    return read_summary(str(out_dir))


def members(out_dir) -> dict[str, dict]:
    return {m["path"]: m for m in map(json.loads, (Path(out_dir) / "members.jsonl").read_text().splitlines())}


def shard_bytes(out_dir) -> dict[str, bytes]:
    return {str(p.relative_to(out_dir)): p.read_bytes() for p in sorted(Path(out_dir).glob("Split-*/*.gz"))}


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
    parts["synthesized/sd/part-002.tar"] = {f"t/s{i:02d}.jpg": image_bytes(seed=i, size=(40, 56))
                                            for i in range(40, 46)}
    parts["real/photos/part-003.tgz"] = {f"r{i:02d}.png": image_bytes("PNG", seed=i) for i in range(50, 55)}
    parts["real/photos/part-004.tar.gz"] = {f"r{i:02d}.jpg": image_bytes(seed=i) for i in range(60, 63)}
    for rel, files in parts.items():
        if rel.endswith(".zip"):
            write_zip(root / rel, files, stored={n for n in files if n.endswith(".png")})
        else:
            write_tar(root / rel, files)
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
def test_zip_and_tar_parts_ingest_to_the_same_shards_as_the_extracted_files(tmp_path, neutralize):
    root = tmp_path / "data"
    parts = parts_tree(root)
    opts = IngestConfig(neutralize_format=neutralize)
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
    from tests.helpers import execution_states, run_example_gen
    root = tmp_path / "data"
    n = sum(len(files) for files in parts_tree(root).values())
    cfg = PipelineConfig.model_validate({
        "pipeline_root": str(tmp_path / "root"), "metadata_path": str(tmp_path / "md.sqlite"),
        "data": {"input": str(root)}}).resolved()
    execution = metadata_store_pb2.Execution
    run_example_gen(cfg)
    run_example_gen(cfg)
    assert execution_states(cfg.metadata_path) == [execution.COMPLETE, execution.CACHED]
    outs = sorted((tmp_path / "root").glob("**/ingest_summary.json"))
    assert json.loads(outs[0].read_text())["inputs"] == n
    # the same member names, one image changed inside one archive, the archive's size unchanged
    part = root / "synthesized/sd/part-001.zip"
    size = part.stat().st_size
    write_zip(part, {f"s{i:02d}.png": image_bytes("PNG", seed=i + (100 if i == 31 else 0)) for i in range(30, 34)},
              stored={f"s{i:02d}.png" for i in range(30, 34)})
    assert part.stat().st_size == size
    run_example_gen(cfg)
    assert execution_states(cfg.metadata_path) == [execution.COMPLETE, execution.CACHED, execution.COMPLETE]


# ------------------------------------------------------------------------------------ bad archives and members
def _patch_zip(path: Path, member: str, **fields) -> None:
    """Rewrites header fields of one member in place (flags, file_size), in its local header and in
    the central directory: what a hostile or broken archive looks like, which zipfile will not write."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    offsets = {"flags": (6, 8, "<H"), "file_size": (22, 24, "<I")}    # (local, central) offsets
    import struct
    for sig, which in ((b"PK\x03\x04", 0), (b"PK\x01\x02", 1)):
        start = 0
        while (k := data.find(sig, start)) >= 0:
            start = k + 4
            n_off = 26 if which == 0 else 28
            n = struct.unpack_from("<H", data, k + n_off)[0]
            name_at = k + (30 if which == 0 else 46)
            if bytes(data[name_at:name_at + n]) != name:
                continue
            for field, value in fields.items():
                struct.pack_into(offsets[field][2], data, k + offsets[field][which], value)
    path.write_bytes(bytes(data))


def test_every_bad_archive_and_member_is_accounted_for(tmp_path):
    root = tmp_path / "data"
    good = {f"g{i}.jpg": image_bytes(seed=i) for i in range(3)}
    write_zip(root / "real/ok.zip", good)
    (root / "real/garbage.zip").write_bytes(b"PK\x03\x04 this is not a zip archive" * 10)
    whole = image_bytes(seed=7)
    write_zip(root / "real/cut.zip", {"a.jpg": whole, "b.jpg": image_bytes(seed=8)})
    (root / "real/cut.zip").write_bytes((root / "real/cut.zip").read_bytes()[:len(whole) // 2])  # no directory
    (root / "synthesized/cut.tgz").parent.mkdir(parents=True, exist_ok=True)
    write_tar(root / "synthesized/full.tgz", {f"x{i}.png": image_bytes("PNG", seed=20 + i, size=(200, 200))
                                              for i in range(3)})
    (root / "synthesized/cut.tgz").write_bytes((root / "synthesized/full.tgz").read_bytes()[:3000])
    (root / "synthesized/full.tgz").unlink()
    bomb = b"\0" * 400_000
    write_zip(root / "synthesized/hostile.zip", {
        "flipped.jpg": image_bytes(seed=30), "secret.jpg": image_bytes(seed=31), "../escape.jpg": image_bytes(seed=32),
        "/etc/abs.jpg": image_bytes(seed=33), "inner.zip": b"PK\x05\x06" + b"\0" * 18, "big.png": bomb,
        "liar.png": bomb, "twice.jpg": image_bytes(seed=34), "__MACOSX/._g.jpg": b"meta", "README.md": b"docs",
        "fine.jpg": image_bytes(seed=35)})
    with zipfile.ZipFile(root / "synthesized/hostile.zip", "a") as z:          # a name listed twice
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            z.writestr("twice.jpg", image_bytes(seed=36))
    _patch_zip(root / "synthesized/hostile.zip", "secret.jpg", flags=0x1)       # encrypted
    _patch_zip(root / "synthesized/hostile.zip", "liar.png", file_size=1000)    # declares 1 kB, inflates to 400 kB
    data = bytearray((root / "synthesized/hostile.zip").read_bytes())           # a corrupt member (CRC)
    with zipfile.ZipFile(root / "synthesized/hostile.zip") as z:
        zi = z.getinfo("flipped.jpg")
    data[zi.header_offset + 30 + len("flipped.jpg") + 500] ^= 0xFF
    (root / "synthesized/hostile.zip").write_bytes(bytes(data))
    t = root / "synthesized/links.tar"
    with tarfile.open(t, "w") as tf_:
        for name, kind in (("link.jpg", tarfile.SYMTYPE), ("ok.jpg", tarfile.REGTYPE), ("../up.jpg", tarfile.REGTYPE)):
            ti = tarfile.TarInfo(name)
            payload = image_bytes(seed=40) if kind == tarfile.REGTYPE else b""
            ti.type, ti.size = kind, len(payload)
            if kind == tarfile.SYMTYPE:
                ti.linkname = "/etc/passwd"
            tf_.addfile(ti, io.BytesIO(payload))
    s = run_ingest(root, tmp_path / "out", IngestConfig(max_file_bytes=100_000))
    m = members(tmp_path / "out")
    q = {json.loads(line)["path"][len(str(root)) + 1:]: json.loads(line)
         for line in (tmp_path / "out/quarantine.jsonl").read_text().splitlines()}
    got = {p[len(str(root)) + 1:]: (r["status"], r["reason"]) for p, r in m.items()}
    assert got == {
        "real/ok.zip/g0.jpg": ("written", ""), "real/ok.zip/g1.jpg": ("written", ""),
        "real/ok.zip/g2.jpg": ("written", ""),
        "real/garbage.zip": ("quarantined", "corrupt_archive"),
        "real/cut.zip": ("quarantined", "corrupt_archive"),
        "synthesized/cut.tgz": ("quarantined", "corrupt_archive"),
        "synthesized/hostile.zip/flipped.jpg": ("quarantined", "corrupt_member"),
        "synthesized/hostile.zip/secret.jpg": ("quarantined", "encrypted"),
        "synthesized/hostile.zip/../escape.jpg": ("quarantined", "outside_archive"),
        "synthesized/hostile.zip//etc/abs.jpg": ("quarantined", "outside_archive"),
        "synthesized/hostile.zip/inner.zip": ("skipped", "nested_archive"),
        "synthesized/hostile.zip/big.png": ("quarantined", "too_large"),
        "synthesized/hostile.zip/liar.png": ("quarantined", "too_large"),
        "synthesized/hostile.zip/twice.jpg": ("written", ""),
        "synthesized/hostile.zip/twice.jpg#11": ("quarantined", "duplicate_member"),
        "synthesized/hostile.zip/__MACOSX/._g.jpg": ("skipped", "hidden"),
        "synthesized/hostile.zip/README.md": ("skipped", "documentation"),
        "synthesized/hostile.zip/fine.jpg": ("written", ""),
        "synthesized/links.tar/link.jpg": ("quarantined", "not_a_file"),
        "synthesized/links.tar/ok.jpg": ("written", ""),
        "synthesized/links.tar/../up.jpg": ("quarantined", "outside_archive"),
    }
    assert s["accounted_for"] is True and s["inputs"] == len(m) == 21
    # every quarantine row says why
    assert "bytes" in q["synthesized/hostile.zip/liar.png"]["detail"] and "declared 1000" in \
        q["synthesized/hostile.zip/liar.png"]["detail"]
    assert "declared 400000" in q["synthesized/hostile.zip/big.png"]["detail"]
    assert q["real/garbage.zip"]["detail"] and q["synthesized/hostile.zip/flipped.jpg"]["detail"]


# ------------------------------------------------------------------------------------ gs://
def test_gs_archives_match_local_ones_on_the_gcs_emulator(gcs_emulator, tmp_path):
    """Zip, tar and tar.gz parts in a bucket (folder and manifest rows through archives) give the same
    members and decisions as the same parts on disk; members are read by ranged requests pinned to
    the listed generation."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage
    bucket = storage.Client(project="test-project", credentials=AnonymousCredentials()).bucket(gcs_emulator)
    root = tmp_path / "data"
    parts = parts_tree(root)
    (root / "real/broken.zip").write_bytes(b"not a zip at all")
    for p in sorted(root.rglob("*")):
        if p.is_file():
            bucket.blob(f"images/{p.relative_to(root)}").upload_from_filename(str(p))
    local = run_ingest(root, tmp_path / "local")
    remote = run_ingest(f"gs://{gcs_emulator}/images", tmp_path / "remote")
    for key in ("inputs", "written", "exact_duplicates", "near_duplicates", "quarantined", "quarantine_reasons",
                "written_by_split", "written_by_label", "accounted_for"):
        assert local[key] == remote[key], key
    assert local["inputs"] == sum(len(f) for f in parts.values()) + 1
    assert local["quarantine_reasons"] == {"corrupt_archive": 1, "not_an_image": 1}

    def rel(ms, prefix):
        return {p[len(prefix) + 1:]: (m["status"], m["split"], m["sha256"]) for p, m in ms.items()}
    assert rel(members(tmp_path / "local"), str(root)) == rel(members(tmp_path / "remote"), f"gs://{gcs_emulator}/images")
    # a manifest in the bucket whose rows go through archives
    bucket.blob("images/manifest.csv").upload_from_string(
        "path,label,content\nreal/photos/part-000.zip/r01.jpg,real,frog\nsynthesized/sd/part-002.tar/t/s41.jpg,"
        "synthesized,cat\nreal/photos/part-003.tgz/r51.png,real,dog\nreal/photos/part-000.zip/missing.jpg,real,x\n")
    s = run_ingest(f"gs://{gcs_emulator}/images/manifest.csv", tmp_path / "manifest")
    assert (s["inputs"], s["written"], s["quarantine_reasons"]) == (4, 3, {"unreadable_path": 1})
