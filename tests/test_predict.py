"""`synthdetect predict` through the CLI, with a model pushed into a registry (a small SavedModel
with the Trainer's signatures, so no training is needed)."""
import json
import subprocess
from pathlib import Path

import pytest

from components.registry.store import LocalRegistry
from tests.conftest import SAMPLE, fill_disk
from tests.tiny_models import tiny_model
from tests.helpers import CLI

IMAGE_EXTS = {".jpg", ".jpeg", ".png"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("predict")
    reg = LocalRegistry(root / "reg")
    model = tiny_model(root / "sm", "good")
    reg.push(str(model), {"model_name": "tiny", "threshold": 0.3, "serving": {"ingest": {"max_side": 256}}})
    return root / "reg"


def _predict(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, "predict", *args], capture_output=True, text=True, timeout=600, cwd=cwd)


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_predict_scores_every_file_and_reports_bad_ones(tmp_path, registry, eval_v1):
    corrupt = tmp_path / "added" / "corrupt.jpg"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    out = tmp_path / "out.jsonl"
    proc = _predict("--model", "registry:production", "--registry", str(registry), "--batch-size", "64",
                    "--out", str(out), str(eval_v1), str(corrupt.parent), cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr[-2000:]   # one input could not be scored
    assert "Traceback" not in proc.stderr
    rows = _lines(out.read_text())
    images = sorted(str(p) for p in eval_v1.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
    assert len(images) == 842
    assert len(rows) == len(images) + 1                       # one line per file, README/manifest skipped
    assert sorted(r["path"] for r in rows) == sorted(images + [str(corrupt)])
    by_path = {r["path"]: r for r in rows}
    bad = by_path[str(corrupt)]
    assert bad["p_synthesized"] is None and bad["label"] is None and bad["error"]
    good = [r for r in rows if r["path"] != str(corrupt)]
    assert all("error" not in r and 0.0 <= r["p_synthesized"] <= 1.0 for r in good)
    assert all(r["label"] == ("synthesized" if r["p_synthesized"] >= 0.3 else "real") for r in good)
    assert {(r["threshold"], r["model_version"]) for r in rows} == {(0.3, "v1")}
    assert "scored 842 files, 1 errors; model v1" in proc.stderr


def test_predict_on_folders_files_and_a_bare_savedmodel(tmp_path, registry):
    folder = SAMPLE / "synthesized"
    one = next((SAMPLE / "real").rglob("*.JPEG"))
    proc = _predict("--model", str(LocalRegistry(registry).local_dir("v1")), str(folder), str(one),
                    str(tmp_path / "missing.png"), cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr[-2000:]   # missing.png could not be scored
    rows = _lines(proc.stdout)
    n_folder = sum(1 for p in folder.rglob("*") if p.is_file())
    assert len(rows) == n_folder + 2
    assert rows[-2]["path"] == str(one) and 0 <= rows[-2]["p_synthesized"] <= 1
    assert rows[-1]["error"] == "not_found"
    assert rows[0]["threshold"] == 0.3  # read from model.json next to the SavedModel


def test_predict_exit_code_says_whether_every_input_was_scored(tmp_path, registry):
    good = sorted((SAMPLE / "real").rglob("*.JPEG"))[:2]
    proc = _predict("--model", "registry:production", "--registry", str(registry), *map(str, good), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["path"] for r in _lines(proc.stdout)] == [str(p) for p in good]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    proc = _predict("--model", "registry:production", "--registry", str(registry), str(good[0]), str(bad),
                    str(good[1]), cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    rows = _lines(proc.stdout)
    assert [r["path"] for r in rows] == [str(good[0]), str(bad), str(good[1])]   # every line still written
    assert rows[1]["error"] and rows[1]["p_synthesized"] is None
    assert all("error" not in r and 0 <= r["p_synthesized"] <= 1 for r in (rows[0], rows[2]))
    assert "1 of 3 inputs could not be scored (exit 4)" in proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--model", "registry:v9"], "version 'v9' not in registry"),
    (["--model", "registry:staging"], "no version or alias 'staging'"),
    (["--model", "/nowhere/model"], "no such SavedModel directory"),
])
def test_predict_user_errors_are_one_line(tmp_path, registry, args, message):
    proc = _predict(*args, "--registry", str(registry), str(SAMPLE), cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and message in proc.stderr


def test_registry_list_and_show(tmp_path, registry):
    proc = subprocess.run([CLI, "registry", "list", "--registry", str(registry), "--json"], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    assert listing["aliases"] == {"latest": "v1", "production": "v1"}
    assert [v["version"] for v in listing["versions"]] == ["v1"] and listing["versions"][0]["threshold"] == 0.3
    proc = subprocess.run([CLI, "registry", "show", "latest", "--registry", str(registry), "--json"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0 and json.loads(proc.stdout)["version"] == "v1"
    proc = subprocess.run([CLI, "registry", "show", "v2", "--registry", str(registry)], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stderr.startswith("error: version 'v2' not in registry")


# ------------------------------------------------------------------- issue 28.7 and late items
def test_an_unreachable_gs_prefix_is_one_error_line_beside_the_scored_files(tmp_path, registry, gcs_emulator):
    """Issue 28.7: local files plus one gs:// prefix that cannot be listed (here a bucket that does not
    exist on the GCS server) gave a traceback, exit 1, no line for the good files and no --out file."""
    good = sorted((SAMPLE / "real").rglob("*.JPEG"))[:2]
    out = tmp_path / "scores.jsonl"
    proc = _predict("--model", "registry:production", "--registry", str(registry), "--out", str(out),
                    str(good[0]), "gs://no-such-bucket-28/images/", str(good[1]), cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    rows = _lines(out.read_text())
    assert [r["path"] for r in rows] == [str(good[0]), "gs://no-such-bucket-28/images/", str(good[1])]
    assert all(0 <= r["p_synthesized"] <= 1 for r in (rows[0], rows[2]))
    assert rows[1]["p_synthesized"] is None and rows[1]["error"].startswith("unreachable")
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()    # written via a temp file, mode as open() gives


def _umask() -> int:
    import os
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_out_on_a_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path, registry, tiny_disk):
    """Issue 28.7: `predict --out` on a full disk left a file whose last line was cut."""
    fill_disk(tiny_disk, leave=8192)
    out = tiny_disk / "scores.jsonl"
    proc = _predict("--model", "registry:production", "--registry", str(registry), "--out", str(out),
                    str(SAMPLE), cwd=tmp_path)           # 80 lines, ~14 KB
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and lines[-1].startswith("error: ") and str(out) in lines[-1]
    assert "no space left" in lines[-1]
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler"]   # no cut file, no temp file


def test_threshold_nan_is_refused(tmp_path, registry):
    """Issue 28.7: `--threshold nan` was accepted and wrote a bare NaN (invalid JSON)."""
    one = next((SAMPLE / "real").rglob("*.JPEG"))
    proc = _predict("--model", "registry:production", "--registry", str(registry), "--threshold", "nan", str(one),
                    cwd=tmp_path)
    assert proc.returncode == 1 and not proc.stdout, (proc.returncode, proc.stdout)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--threshold" in lines[0], proc.stderr


def test_an_empty_folder_is_nothing_to_score(tmp_path, registry):
    """Issue 28 (late items): `predict` on an empty folder exited 0 with no output."""
    (tmp_path / "empty").mkdir()
    proc = _predict("--model", "registry:production", "--registry", str(registry), str(tmp_path / "empty"),
                    cwd=tmp_path)
    assert proc.returncode == 1 and not proc.stdout, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: nothing to score"), proc.stderr


def test_predict_scores_archives_and_folders_of_archives_member_by_member(tmp_path, registry):
    """An archive or a folder of archives: one line per member, named archive/member, scored as
    the same image loose; a bad member or archive is an error line."""
    import zipfile

    from tests.helpers import write_tar
    imgs = sorted((SAMPLE / "real").rglob("*.JPEG"))[:3]
    parts = tmp_path / "parts"
    parts.mkdir()
    with zipfile.ZipFile(parts / "a.zip", "w") as z:
        for p in imgs[:2]:
            z.write(p, f"sub/{p.name}")
        z.writestr("../escape.jpg", imgs[0].read_bytes())
        z.writestr("README.md", "docs")
    write_tar(parts / "b.tar.gz", {imgs[2].name: imgs[2].read_bytes()})
    (parts / "broken.tar").write_bytes(b"not a tar" * 100)
    proc = _predict("--model", "registry:production", "--registry", str(registry), str(parts),
                    str(parts / "a.zip"), str(imgs[0]), cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    by = {r["path"]: r for r in _lines(proc.stdout)}
    a = f"{parts}/a.zip"
    zipped = [f"{a}/sub/{imgs[0].name}", f"{a}/sub/{imgs[1].name}", f"{a}/../escape.jpg"]   # archive order
    assert [r["path"] for r in _lines(proc.stdout)] == [
        *zipped, f"{parts}/b.tar.gz/{imgs[2].name}", f"{parts}/broken.tar", *zipped, str(imgs[0])]
    assert by[f"{a}/../escape.jpg"]["error"].startswith("outside_archive")
    assert by[f"{parts}/broken.tar"]["error"].startswith("corrupt_archive")
    # a member scores exactly as the same file loose
    assert by[f"{a}/sub/{imgs[0].name}"]["p_synthesized"] == by[str(imgs[0])]["p_synthesized"]
    assert 0 <= by[f"{parts}/b.tar.gz/{imgs[2].name}"]["p_synthesized"] <= 1
