"""Ingestion under adversarial inputs and faults (issue 16): what is read, what is recorded, what is
never lost; safe concurrent, interrupted and disk-full runs. Each case reproduced a failure of the
previous ingestion code first."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from components.ingest.images import decode_file
from components.ingest.job import run_ingest
from components.ingest.listing import ImageInput, list_inputs
from components.ingest.outputs import OutputError, OutputLock, read_members, read_summary
from schemas.config import IngestConfig
from tests.helpers import SPLITS, encode, scene
from tests.helpers import CLI
from tests.helpers import assert_consistent, tree

IN_MEMORY = ["--direct_running_mode=in_memory"]


def ingest_cli(*args, timeout=600, **kw):
    return subprocess.run([CLI, "ingest", "--no-progress", *args], capture_output=True, text=True, timeout=timeout,
                          **kw)


# ------------------------------------------------------------------------------------ 2, 5, 6: listing
def test_listing_records_hidden_symlinked_special_and_outside_files(tmp_path):
    """Case 2: dot-files and symlinked folders were silently absent; 5: a FIFO hung ingestion; 6:
    folder symlinks read files outside the root."""
    root = tree(tmp_path / "data", 2)
    outside = tree(tmp_path / "elsewhere", 1, seed=5)
    (root / "real" / "src" / ".hidden.png").write_bytes(encode(scene(77), "PNG"))
    (root / "real" / ".cache").mkdir()
    (root / "real" / ".cache" / "x.jpg").write_bytes(encode(scene(78)))
    os.symlink(root / "synthesized" / "src", root / "synthesized" / "linked")        # inside: followed
    os.symlink(outside / "real", root / "real" / "escape")                           # outside: refused
    os.symlink(root / "real", root / "real" / "src" / "loop")                        # a loop
    os.mkfifo(root / "real" / "src" / "pipe.jpg")
    (root / "real" / "src" / "big.jpg").write_bytes(encode(scene(79)) + b"\0" * 200_000)
    listing = list_inputs(str(root), max_file_bytes=150_000)
    items = {Path(i.path).relative_to(root).as_posix() for i in listing.items}
    rejected = {Path(r["path"]).relative_to(root).as_posix(): (r["status"], r["reason"]) for r in listing.rejected}
    assert "synthesized/linked/s0_0.png" in items and "synthesized/src/s0_0.png" in items
    assert rejected == {
        "real/src/.hidden.png": ("skipped", "hidden"),
        "real/.cache": ("skipped", "hidden"),
        "real/escape": ("quarantined", "outside_root"),
        "real/src/loop": ("skipped", "symlink_loop"),
        "real/src/pipe.jpg": ("quarantined", "not_a_file"),
        "real/src/big.jpg": ("quarantined", "too_large"),
    }
    assert not any("elsewhere" in i.path for i in listing.items)


def test_manifest_rows_outside_the_root_are_never_read(tmp_path):
    """Case 5 and 6: `/dev/zero,real` grew memory past 3 GB; `../../etc/...` and absolute paths
    read files outside the manifest's folder into the training data."""
    root = tree(tmp_path / "data", 2)
    (tmp_path / "secret.jpg").write_bytes(encode(scene(9)))
    rows = ["path,label", "real/src/r0_0.jpg,real", f"{root}/synthesized/src/s0_0.png,synthesized",
            "/dev/zero,real", "../secret.jpg,real", "../" * 30 + "etc/passwd,real", f"{tmp_path}/secret.jpg,real",
            "real/src/missing.jpg,real"]
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    listing = list_inputs(str(root / "manifest.csv"))
    assert sorted(Path(i.path).name for i in listing.items) == ["r0_0.jpg", "s0_0.png"]
    reasons = {r["path"]: r["reason"] for r in listing.rejected}
    assert reasons["/dev/zero"] == "outside_root"
    assert reasons[str(tmp_path / "secret.jpg")] == "outside_root"
    assert reasons["/etc/passwd"] == "outside_root"
    assert reasons[str(root / "real/src/missing.jpg")] == "unreadable_path"
    # an allowed root lets rows point there, but a device is still never read
    listing = list_inputs(str(root / "manifest.csv"), allowed_roots=("/dev", str(tmp_path)))
    reasons = {r["path"]: r["reason"] for r in listing.rejected}
    assert reasons["/dev/zero"] == "not_a_file" and str(tmp_path / "secret.jpg") not in reasons


def test_a_fifo_or_device_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "p.jpg"
    os.mkfifo(fifo)
    result = {}

    def read_both():
        result["fifo"] = decode_file(ImageInput(str(fifo), "real"), IngestConfig())[1]["reason"]
        result["device"] = decode_file(ImageInput("/dev/zero", "real"), IngestConfig())[1]["reason"]

    t = threading.Thread(target=read_both, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "reading a FIFO blocked"
    assert result == {"fifo": "not_a_file", "device": "not_a_file"}


def test_skipped_and_rejected_inputs_are_counted_by_the_invariant(tmp_path):
    root = tree(tmp_path / "data", 3)
    (root / "real" / "src" / ".DS_Store").write_bytes(b"junk")
    (root / "real" / "README.md").write_text("about these photos")
    os.mkfifo(root / "synthesized" / "src" / "pipe.png")
    s = run_ingest(str(root), str(tmp_path / "out"), IngestConfig(), SPLITS, IN_MEMORY)
    assert s["inputs"] == 6 + 3 and s["accounted_for"]
    assert s["inputs"] == s["written"] + s["exact_duplicates"] + s["near_duplicates"] + s["quarantined"] + s["skipped"]
    assert s["skip_reasons"] == {"documentation": 1, "hidden": 1} and s["quarantine_reasons"] == {"not_a_file": 1}
    statuses = {Path(m["path"]).name: m["status"] for m in read_members(str(tmp_path / "out"))}
    assert statuses[".DS_Store"] == statuses["README.md"] == "skipped" and statuses["pipe.png"] == "quarantined"


# ------------------------------------------------------------------------------------ 3: flat images
def test_flat_and_tiny_images_are_not_near_duplicates_of_each_other(tmp_path):
    """Case 3: every flat image had the same pHash, so a 1x1 image and a 20000x1 strip became near
    duplicates of an unrelated large black image, and across labels a label_conflict."""
    root = tmp_path / "data"
    imgs = {"real/a/black_big.png": Image.new("RGB", (3000, 3000)), "real/a/black_1x1.png": Image.new("RGB", (1, 1)),
            "synthesized/b/strip.png": Image.new("RGB", (20000, 1)),
            "synthesized/b/grey.png": Image.new("RGB", (300, 200), (128, 128, 128)),
            "real/a/white.jpg": Image.new("RGB", (400, 300), (255, 255, 255)),
            "real/a/black_copy.png": Image.new("RGB", (3000, 3000))}               # an exact duplicate still
    for rel, img in imgs.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(root / rel)
    s = run_ingest(str(root), str(tmp_path / "out"), IngestConfig(), SPLITS, IN_MEMORY)
    st = {Path(m["path"]).name: (m["status"], m["reason"]) for m in read_members(str(tmp_path / "out"))}
    assert s["near_duplicates"] == 0 and "label_conflict" not in s["quarantine_reasons"], st
    assert s["exact_duplicates"] == 1 and {st["black_big.png"][0], st["black_copy.png"][0]} == {"written",
                                                                                                  "exact_duplicate"}


# ------------------------------------------------------------------------------------ 4, 7: splits and labels
def test_one_label_only_warns_in_the_summary_and_on_the_terminal(tmp_path):
    root = tmp_path / "data"
    for i in range(4):
        (root / "real" / "x").mkdir(parents=True, exist_ok=True)
        (root / "real" / "x" / f"{i}.jpg").write_bytes(encode(scene(i)))
    out = ingest_cli("--input", str(root), "--output", str(tmp_path / "out"), "--set", "ingest.workers=1")
    assert out.returncode == 0, out.stderr
    s = read_summary(str(tmp_path / "out"))
    assert "no synthesized images were written" in s["warnings"]
    assert "warning: no synthesized images were written" in out.stderr


def test_split_names_must_be_plain_identifiers(tmp_path):
    root = tree(tmp_path / "data", 1)
    out = ingest_cli("--input", str(root), "--output", str(tmp_path / "out"),
                     "--set", "data.split_ratios={train: 7, eval: 3, '/../../../escape_split': 2}")
    assert out.returncode == 1 and out.stderr.startswith("error: invalid config") and "plain identifier" in out.stderr
    assert not list(tmp_path.glob("**/*escape_split*")) and not (tmp_path / "out").exists()


def test_shards_of_an_earlier_split_set_do_not_survive(tmp_path):
    root = tree(tmp_path / "data", 4)
    out_dir = tmp_path / "out"
    first = ingest_cli("--input", str(root), "--output", str(out_dir), "--set", "ingest.workers=1",
                       "--set", "data.split_ratios={train: 6, eval: 2, test: 2}")
    assert first.returncode == 0, first.stderr
    assert (out_dir / "Split-test").is_dir()
    second = ingest_cli("--input", str(root), "--output", str(out_dir), "--set", "ingest.workers=1")
    assert second.returncode == 0, second.stderr
    assert sorted(p.name for p in out_dir.glob("Split-*")) == ["Split-eval", "Split-train"]
    assert_consistent(out_dir)


# ------------------------------------------------------------------------------------ 8, 9: concurrency, kill -9
def test_lock_refuses_a_second_writer_and_takes_over_a_dead_one(tmp_path):
    out = str(tmp_path / "out")
    with OutputLock(out):
        with pytest.raises(OutputError, match="another ingestion is writing"):
            OutputLock(out).acquire()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    Path(out + ".lock").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "started": "x",
                                               "token": "t"}))
    lock = OutputLock(out).acquire()
    assert lock.took_over["pid"] == dead.pid
    lock.release()
    assert not Path(out + ".lock").exists()


def test_two_concurrent_ingests_into_one_output(tmp_path):
    """Case 8: both exited 0 and the output mixed shards of the two inputs."""
    a, b = tree(tmp_path / "a", 20, seed=1), tree(tmp_path / "b", 6, seed=2)
    out_dir = tmp_path / "out"
    first = subprocess.Popen([CLI, "ingest", "--no-progress", "--input", str(a), "--output", str(out_dir),
                              "--set", "ingest.workers=1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not Path(str(out_dir) + ".lock").exists():
        assert first.poll() is None and time.time() < deadline, "the first ingestion never took the lock"
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGSTOP)          # the first writer holds the lock, alive, for as long as we like
    try:
        second = ingest_cli("--input", str(b), "--output", str(out_dir), "--set", "ingest.workers=1")
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert second.returncode == 1 and second.stderr.startswith("error: another ingestion is writing")
    assert len(second.stderr.strip().splitlines()) == 1   # fails before listing anything
    s = assert_consistent(out_dir)
    assert s["inputs"] == 40 and all(str(a) in m["path"] for m in read_members(str(out_dir)))


def test_sigkill_during_ingest_keeps_the_previous_complete_output(tmp_path):
    """Case 9: old shards were deleted first and the old summary stayed beside empty folders."""
    small, big = tree(tmp_path / "small", 3, seed=3), tree(tmp_path / "big", 60, seed=4)
    out_dir = tmp_path / "out"
    assert ingest_cli("--input", str(small), "--output", str(out_dir), "--set", "ingest.workers=1").returncode == 0
    before = {p.relative_to(out_dir): p.read_bytes() for p in out_dir.rglob("*") if p.is_file()}
    proc = subprocess.Popen([CLI, "ingest", "--no-progress", "--input", str(big), "--output", str(out_dir),
                             "--set", "ingest.workers=2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 180
    while not list(tmp_path.glob(".out.tmp-*/_ingest_work/meta-*")):   # the scan has begun writing
        assert proc.poll() is None and time.time() < deadline, "ingestion ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    after = {p.relative_to(out_dir): p.read_bytes() for p in out_dir.rglob("*") if p.is_file()}
    assert after == before                                   # the previous output, complete and untouched
    assert_consistent(out_dir)
    # the next run takes over the dead run's lock, removes its leftovers and replaces the output
    again = ingest_cli("--input", str(big), "--output", str(out_dir), "--set", "ingest.workers=1")
    assert again.returncode == 0, again.stderr
    assert "took over the lock" in again.stderr
    assert assert_consistent(out_dir)["inputs"] == 120
    assert not list(tmp_path.glob(".out.*")) and not Path(str(out_dir) + ".lock").exists()


# ------------------------------------------------------------------------------------ 11, 12: errors
def test_output_through_a_regular_file_is_one_error_line(tmp_path):
    root = tree(tmp_path / "data", 1)
    (tmp_path / "afile").write_text("x")
    for target in (tmp_path / "afile" / "out", tmp_path / "afile"):
        out = ingest_cli("--input", str(root), "--output", str(target))
        assert out.returncode == 1 and out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MB tmpfs (needs root, as in CI and on the development machines)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_is_one_error_line_and_leaves_nothing_half_written(tmp_path, tiny_disk):
    """Case 11: exit 1 with a 73-line Beam traceback and a truncated shard left behind."""
    root = tmp_path / "data"
    for i in range(40):
        for label, fmt in (("real", "JPEG"), ("synthesized", "PNG")):
            p = root / label / "s" / f"{label}{i}.{'jpg' if fmt == 'JPEG' else 'png'}"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(encode(scene(i * 2 + (label == "real"), (400, 400)), fmt))
    out = ingest_cli("--input", str(root), "--output", str(tiny_disk / "out"), "--set", "ingest.workers=1",
                     "--set", "ingest.max_side=0", "--set", "ingest.codec=PNG")
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith("error: no space left on the device") and str(tiny_disk) in lines[-1]
    assert "Traceback" not in out.stderr and len([ln for ln in lines if ln.startswith("error")]) == 1
    assert not [p for p in tiny_disk.iterdir() if p.name != "lost+found"]   # no partial output, no temp folder


def test_predict_on_a_folder_with_a_fifo_does_not_hang(tmp_path):
    """Case 5: a FIFO in the folder hung `predict FOLDER` forever."""
    from components.registry.store import LocalRegistry
    from tests.tiny_models import tiny_model
    reg = LocalRegistry(tmp_path / "reg")
    reg.push(str(tiny_model(tmp_path / "sm", "good")), {"model_name": "tiny", "threshold": 0.5})
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(encode(scene(1)))
    os.mkfifo(folder / "pipe.jpg")
    out = subprocess.run([CLI, "predict", "--model", "registry:production", "--registry", str(tmp_path / "reg"),
                          str(folder)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.stdout.splitlines())}
    assert rows["a.jpg"]["p_synthesized"] is not None
    assert rows["pipe.jpg"]["p_synthesized"] is None and rows["pipe.jpg"]["error"].startswith("not_a_file")


def test_same_structure_in_other_colours_is_not_a_near_duplicate(tmp_path):
    """pHash reads luminance structure only: one picture in blue and the same picture in orange got
    one hash (seen as false merges of low-detail images in the scale benchmark). The colour check
    keeps them apart and still pairs a resized copy."""
    import numpy as np
    ramp = (np.asarray(scene(3, (200, 150)).convert("L"), dtype=float) / 255)[:, :, None]   # one structure
    blue = Image.fromarray((ramp * np.array([40, 90, 230])).astype(np.uint8))
    orange = Image.fromarray((ramp * np.array([240, 140, 30])).astype(np.uint8))
    root = tmp_path / "data"
    (root / "real" / "a").mkdir(parents=True)
    blue.save(root / "real" / "a" / "blue.png")
    orange.save(root / "real" / "a" / "orange.png")
    blue.resize((180, 135), Image.LANCZOS).save(root / "real" / "a" / "blue_small.jpg", quality=90)
    from components.ingest import dedup
    assert dedup.hamming(dedup.perceptual_hash(blue), dedup.perceptual_hash(orange)) <= 6   # pHash alone: a match
    run_ingest(str(root), str(tmp_path / "out"), IngestConfig(), SPLITS, IN_MEMORY)
    st = {Path(m["path"]).name: m for m in read_members(str(tmp_path / "out"))}
    assert st["blue_small.jpg"]["cluster_id"] == st["blue.png"]["cluster_id"]
    assert st["orange.png"]["status"] == "written" and st["orange.png"]["cluster_id"] != st["blue.png"]["cluster_id"]
