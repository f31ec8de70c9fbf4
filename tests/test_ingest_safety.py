"""Data safety of `synthdetect ingest --output` (issue 28): an ingestion never deletes what it did
not write. Each case deleted or misplaced data on the previous code (reproduced first)."""
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import assert_consistent, error_lines, tree
from tests.helpers import CLI


def snapshot(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every file, folder and link under `root` (except under `skip`) -> its content hash / kind."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if skip is not None and (d == skip or skip in d.parents):
            dirnames[:] = []
            continue
        for name in dirnames:
            p = d / name
            out[str(p.relative_to(root))] = "link->" + os.readlink(p) if p.is_symlink() else "dir"
        for name in filenames:
            p = d / name
            if skip is not None and (p == skip or skip in p.parents):
                continue
            out[str(p.relative_to(root))] = ("link->" + os.readlink(p) if p.is_symlink()
                                             else hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def run_ingest(args: list[str], cwd: Path, home: Path, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(home)}
    return subprocess.run([CLI, "ingest", "--no-progress", "--set", "ingest.workers=1", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, **kw)


def workspace(tmp_path: Path) -> Path:
    """W/in (a labelled image folder), W/notes.txt, W/other/a.txt, W/empty/, W/m/manifest.csv with
    its images beside it, W/home/ (the HOME of the runs) with a file."""
    w = tmp_path / "W"
    tree(w / "in", 2)
    (w / "notes.txt").write_text("not an image, not ours")
    (w / "other").mkdir()
    (w / "other" / "a.txt").write_text("someone else's")
    (w / "empty").mkdir()
    tree(w / "m" / "imgs", 1, seed=3)
    rows = ["path,label"] + [f"imgs/{p.relative_to(w / 'm' / 'imgs')},{p.relative_to(w / 'm' / 'imgs').parts[0]}"
                             for p in sorted((w / "m" / "imgs").rglob("*.*"))]
    (w / "m" / "manifest.csv").write_text("\n".join(rows) + "\n")
    (w / "home").mkdir()
    (w / "home" / ".profile").write_text("# mine")
    return w


# (name, --input relative to W, --output as given (relative to W unless absolute), cwd relative to W)
REFUSED = [
    ("parent of the input", "in", ".", "."),           # --output W from W: everything in W
    ("parent of the input (absolute)", "in", "{W}", "in"),
    ("equal to the input", "in", "in", "."),
    ("inside the input", "in", "in/out", "."),
    ("the current folder", "in", ".", "other"),
    ("the current folder by path", "in", "{W}/other", "other"),
    ("a parent of the current folder", "in", "{W}", "other"),
    ("empty string", "in", "", "."),
    ("home", "in", "{W}/home", "."),
    ("root", "in", "/", "."),
    ("a folder of someone else's files", "in", "other", "."),
    ("the folder of a manifest input", "m/manifest.csv", "m", "."),
    ("the manifest file itself", "m/manifest.csv", "m/manifest.csv", "."),
]


@pytest.mark.parametrize("name,inp,out,cwd", REFUSED, ids=[c[0] for c in REFUSED])
def test_unsafe_outputs_are_refused_before_any_work_and_nothing_is_removed(tmp_path, name, inp, out, cwd):
    w = workspace(tmp_path)
    before = snapshot(tmp_path)
    r = run_ingest(["--input", str(w / inp), "--output", out.replace("{W}", str(w))], cwd=w / cwd, home=w / "home")
    assert r.returncode == 1, (name, r.stdout, r.stderr)
    assert len(error_lines(r.stderr)) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "--output" in error_lines(r.stderr)[0]
    assert snapshot(tmp_path) == before           # nothing removed, nothing added (no temp folder, no lock)


def test_accepted_outputs_replace_only_their_own_files(tmp_path):
    """New, empty, and an earlier output: written; a second ingestion into the same output replaces
    the first; nothing outside the output changes."""
    w = workspace(tmp_path)
    home = tmp_path / "home"   # Beam keeps a cache in HOME: outside the snapshot
    for out in ("new/out", "empty"):
        before = snapshot(w, skip=w / out)
        for _ in range(2):                               # the second run replaces an earlier output
            r = run_ingest(["--input", str(w / "in"), "--output", str(w / out)], cwd=w, home=home)
            assert r.returncode == 0, r.stderr
            assert_consistent(w / out)
        after = snapshot(w, skip=w / out)
        strip = lambda d, out=out: {k: v for k, v in d.items() if k not in ("new", out)}  # noqa: E731 - a one-line helper
        assert strip(after) == strip(before)
        assert not [p for p in (w / out).parent.iterdir() if p.name.startswith(f".{Path(out).name}.")]
    # --json: the summary on stdout, as ingest_summary.json has it, with where it went (issue 27.10)
    r = run_ingest(["--input", str(w / "in"), "--output", str(w / "empty"), "--json"], cwd=w, home=home)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got.pop("output") == str(w / "empty") and got.pop("seconds") >= 0
    assert got == json.loads((w / "empty" / "ingest_summary.json").read_text())


def test_an_earlier_output_with_a_file_added_is_not_replaced(tmp_path):
    w = workspace(tmp_path)
    home = tmp_path / "home"
    r = run_ingest(["--input", str(w / "in"), "--output", "out"], cwd=w, home=home)
    assert r.returncode == 0, r.stderr
    (w / "out" / "my-analysis.ipynb").write_text("{}")
    (w / "out" / "Split-train" / "notes.md").write_text("mine")
    before = snapshot(w)
    r = run_ingest(["--input", str(w / "in"), "--output", "out"], cwd=w, home=home)
    assert r.returncode == 1 and "my-analysis.ipynb" in r.stderr and "Traceback" not in r.stderr
    assert snapshot(w) == before


def test_an_output_symlink_is_written_through_and_kept(tmp_path):
    """Case 2: the link was replaced by a real folder, its target got nothing, and a `.out.old-*`
    link stayed forever."""
    w = workspace(tmp_path)
    home = tmp_path / "home"
    target = tmp_path / "elsewhere" / "target"
    target.mkdir(parents=True)
    (w / "link").symlink_to(target)
    for _ in range(2):
        r = run_ingest(["--input", str(w / "in"), "--output", "link"], cwd=w, home=home)
        assert r.returncode == 0, r.stderr
        assert (w / "link").is_symlink() and os.readlink(w / "link") == str(target)
        assert_consistent(target)
    assert not [p.name for p in w.iterdir() if p.name.startswith(".link")]
    assert not [p.name for p in target.parent.iterdir() if p.name != "target"]
    # a link to someone else's folder is refused like the folder itself
    (w / "link2").symlink_to(w / "other")
    before = snapshot(w)
    r = run_ingest(["--input", str(w / "in"), "--output", "link2"], cwd=w, home=home)
    assert r.returncode == 1 and "a.txt" in r.stderr
    assert snapshot(w) == before


def test_an_output_where_no_folder_can_be_created_fails_at_once(tmp_path):
    """`--output /proc/x` failed after the whole job as an internal error."""
    w = workspace(tmp_path)
    r = run_ingest(["--input", str(w / "in"), "--output", "/proc/synthdetect-out"], cwd=w, home=w / "home")
    assert r.returncode == 1 and len(error_lines(r.stderr)) == 1 and "cannot create a folder" in r.stderr, r.stderr


def test_gcs_outputs_that_hold_an_input_or_foreign_objects_are_refused(gcs_emulator, tmp_path):
    from google.cloud import storage
    bucket = storage.Client().bucket(gcs_emulator)
    for name in ("data/in/real/a.jpg", "data/notes.txt", "other/a.txt"):
        bucket.blob(name).upload_from_string(b"x")
    names = lambda: sorted(b.name for b in storage.Client().list_blobs(gcs_emulator))  # noqa: E731 - a one-line helper
    before = names()
    cases = [("gs://{b}/data/in", "data/in", "is the input"),
             ("gs://{b}/data", "data/in", "contains the input"),
             ("gs://{b}/data/in/out", "data/in", "inside the input"),
             ("gs://{b}/other", "data/in", "not an earlier ingestion's output"),
             ("gs://{b}", "data/in", "whole bucket")]
    home = tmp_path / "home"
    home.mkdir()
    for out, inp, says in cases:
        r = run_ingest(["--input", f"gs://{gcs_emulator}/{inp}", "--output", out.format(b=gcs_emulator)],
                       cwd=tmp_path, home=home)
        assert r.returncode == 1 and says in r.stderr and len(error_lines(r.stderr)) == 1, (out, r.stderr)
    assert names() == before


def test_output_rules_on_paths_without_a_run(tmp_path):
    """The decision itself, on paths: a previous output with only our entries is replaceable."""
    from components.ingest.outputs import OutputError, safe_output
    out = tmp_path / "out"
    (out / "Split-train").mkdir(parents=True)
    (out / "Split-train" / "data_tfrecord-00000-of-00001.gz").write_bytes(b"")
    for name in ("ingest_summary.json", "members.jsonl", "quarantine.jsonl"):
        (out / name).write_text(json.dumps({}))
    assert safe_output(str(out), [str(tmp_path / "in")], cwd="/", home="/nonexistent") == str(out.resolve())
    (out / "Split-train" / "sub").mkdir()
    with pytest.raises(OutputError, match="Split-train/sub/"):
        safe_output(str(out), [], cwd="/", home="/nonexistent")


# ------------------------------------------------------------------------------------ wrong outputs
def test_float_images_are_scaled_not_written_black(tmp_path):
    """Case 4: a mode-F TIFF with values 0..1 became an all-black image (two of them: duplicates)."""
    import io

    import numpy as np
    from PIL import Image

    from components.ingest.images import decode_file
    from schemas.config import IngestConfig
    from components.ingest.listing import ImageInput
    opts = IngestConfig(codec="PNG")

    def tiff(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(arr.astype(np.float32), "F").save(buf, "TIFF")
        return buf.getvalue()
    ramp = np.tile(np.linspace(0, 1, 64), (48, 1))
    pixels = {}
    for name, arr in (("unit", ramp), ("levels", ramp * 255), ("other", ramp[:, ::-1])):
        kind, d = decode_file(ImageInput(f"{name}.tif", "real", "s"), opts, tiff(arr))
        assert kind == "ok", d
        raw = d.example.features.feature["image_raw"].bytes_list.value[0]
        img = np.asarray(Image.open(io.BytesIO(raw)).convert("L"), dtype=np.float32)
        assert abs(img[:, -1].mean() - 255 * arr[:, -1].mean() / arr.max()) < 2 and img.std() > 50
        pixels[name] = d.pixel_sha
    assert pixels["unit"] == pixels["levels"] != pixels["other"]
    for bad, says in ((ramp * 1000, "0..1000"), (ramp - 0.5, "-0.5"), (np.full((8, 8), np.nan), "NaN")):
        kind, d = decode_file(ImageInput("bad.tif", "real", "s"), opts, tiff(bad))
        assert kind == "quarantine" and d["reason"] == "unsupported_pixel_values" and says in d["detail"], d


def write_manifest(path: Path, lines: list) -> Path:
    path.write_text("".join((json.dumps(x) if not isinstance(x, str) else x) + "\n" for x in lines))
    return path


def test_manifest_metadata_numbers_are_text_and_other_types_are_named(tmp_path):
    """Case 5: `"generator": 1.5` quarantined a good image as corrupt_image; `"source": 2024` became
    an int64 feature that ExampleValidator rejected later."""
    from components.ingest.images import decode_file
    from schemas.config import IngestConfig
    from components.ingest.listing import InputError, list_inputs
    from tests.helpers import encode, scene
    (tmp_path / "a.jpg").write_bytes(encode(scene(1)))
    m = write_manifest(tmp_path / "m.jsonl", [{"path": "a.jpg", "label": "real", "source": 2024, "generator": 1.5,
                                               "content": "cat"}])
    [item] = list_inputs(str(m)).items
    assert (item.source, item.generator, item.content) == ("2024", "1.5", "cat")
    kind, d = decode_file(item, IngestConfig())
    assert kind == "ok", d
    feats = d.example.features.feature
    assert feats["source"].bytes_list.value == [b"2024"] and feats["generator"].bytes_list.value == [b"1.5"]
    for bad, says in (({"generator": [1, 2]}, "line 2: generator must be text"),
                      ({"source": {"a": 1}}, "line 2: source must be text"),
                      ({"content": True}, "line 2: content must be text")):
        write_manifest(m, [{"path": "a.jpg", "label": "real"}, {"path": "a.jpg", "label": "real", **bad}])
        with pytest.raises(InputError, match=says):
            list_inputs(str(m))


def test_manifest_errors_name_the_line_and_a_nul_byte_is_an_input_error(tmp_path):
    """JSONL errors said "row 2" for line 1; a NUL byte was an internal failure."""
    from components.ingest.listing import InputError, list_inputs
    m = write_manifest(tmp_path / "m.jsonl", [{"path": "a.jpg"}])
    with pytest.raises(InputError, match="line 1 needs 'path' and 'label'"):
        list_inputs(str(m))
    c = tmp_path / "m.csv"
    c.write_text("path,label\na.jpg,real\nb.jpg,cat\n")
    with pytest.raises(InputError, match="line 3 has label 'cat'"):
        list_inputs(str(c))
    c.write_bytes(b"path,label\na.jpg,real\nb\x00.jpg,real\n")
    with pytest.raises(InputError, match="line 3 holds a NUL byte"):
        list_inputs(str(c))
    r = subprocess.run([CLI, "ingest", "--no-progress", "--input", str(c), "--output", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 1 and "NUL byte" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_an_unreadable_folder_reached_through_a_symlink_is_unreadable_not_a_loop(tmp_path):
    from components.ingest.listing import list_inputs
    from tests.helpers import encode, scene
    import shutil
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="synthdetect-test-"))   # pytest's tmp_path is private to root
    base.chmod(0o755)
    root = base / "d"
    (root / "real" / "a").mkdir(parents=True)
    (root / "real" / "a" / "x.jpg").write_bytes(encode(scene(1)))
    locked = root / "synthesized" / "locked"
    locked.mkdir(parents=True)
    (root / "real" / "alink").symlink_to(locked)          # walked first (real/ < synthesized/)
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            os.setegid(65534)   # root reads anything: drop to nobody's group/user for the listing
            os.seteuid(65534)
        try:
            rej = {r["path"].removeprefix(str(root) + "/"): r["reason"] for r in list_inputs(str(root)).rejected}
        finally:
            os.seteuid(0)
            os.setegid(0)
    finally:
        locked.chmod(0o755)
        shutil.rmtree(base)
    assert rej.get("synthesized/locked") == "unreadable_path", rej
    assert "symlink_loop" not in rej.values()


# ------------------------------------------------------------------------------------ 10: kill, Ctrl-C
def _start_big_ingest(tmp_path: Path, pairs: int = 400) -> tuple[subprocess.Popen, set[str]]:
    import time
    # 800 files: the scan lasts seconds even on a quiet machine, so the signal finds the job running
    big = tree(tmp_path / "big", pairs, seed=4)
    # a temporary folder of its own: parallel test workers' ingestions make their own progress folders
    (tmp_path / "tmp").mkdir()
    before = set(os.listdir(tmp_path / "tmp"))
    import signal
    # SIGINT as a terminal leaves it (default): a test worker of pytest-xdist ignores it, and a child
    # inherits an ignored SIGINT, so Ctrl-C would never reach the ingestion
    proc = subprocess.Popen([CLI, "ingest", "--no-progress", "--input", str(big), "--output", str(tmp_path / "out"),
                             "--set", "ingest.workers=2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=tmp_path, env={**os.environ, "TMPDIR": str(tmp_path / "tmp")},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 900                         # worker start-up on a loaded machine: minutes
    while not list(tmp_path.glob(".out.tmp-*/_ingest_work/meta-*")):   # workers are scanning
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc, before


def _workers(pid: int) -> list:
    import psutil
    out = []
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:          # the launcher has ended already
        return out
    for c in children:
        try:
            if "pipeline.reaper" not in " ".join(c.cmdline()):
                out.append(c)
        except psutil.Error:      # ended while we looked
            pass
    return out


def _gone(procs: list, timeout: float = 30) -> list:
    import psutil
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_a_killed_ingest_leaves_no_worker_and_no_progress_folder(tmp_path):
    """Case 10: after `kill -9` of the launcher two Beam workers (~230 MB each) ran on for minutes
    and /tmp/synthdetect-progress-* stayed forever."""
    import signal
    proc, before = _start_big_ingest(tmp_path)
    workers = _workers(proc.pid)
    assert workers, "the DirectRunner started no worker process"
    os.kill(proc.pid, signal.SIGKILL)                     # the launcher alone, as an OOM kill would
    proc.communicate()
    assert not _gone(workers), "Beam workers outlived the killed ingestion"
    import time
    deadline = time.time() + 10
    def progress_folders() -> list[str]:
        return [n for n in set(os.listdir(tmp_path / "tmp")) - before if n.startswith("synthdetect-progress-")]
    while progress_folders() and time.time() < deadline:
        time.sleep(0.2)
    assert not progress_folders()


def test_ctrl_c_during_ingest_is_one_line_without_worker_tracebacks(tmp_path):
    """Ctrl-C printed four worker tracebacks beside the one `error:` line."""
    import signal
    # 3,000 files (a scan of seconds of CPU: on a loaded machine the test itself reacts slowly, and an
    # 800-file job once finished before the signal arrived); the signal at once, the workers listed after
    proc, _ = _start_big_ingest(tmp_path, pairs=1500)
    os.killpg(proc.pid, signal.SIGINT)                    # what the terminal sends to the foreground group
    workers = _workers(proc.pid) if proc.poll() is None else []
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert len(error_lines(err)) == 1 and "interrupted" in error_lines(err)[0], err
    assert not _gone(workers)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
