"""The versioned registry: immutable versions, atomic aliases, pushes that die or race.

Also defines `tiny_model`, small SavedModels with the same two signatures as the Trainer's (used by
the gate and predict tests instead of training VGG16)."""
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tensorflow as tf

from components.registry.store import (ALIASES_JSON, MODEL_JSON, STAGING_PREFIX, LocalRegistry, RegistryError,
                                       open_registry)
from tests.conftest import REPO
from tests.helpers import CLI
from tests.tiny_models import tiny_model


# ------------------------------------------------------------------------------ tiny SavedModels


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "sm", "good")


META = {"model_name": "vgg16_finetune", "threshold": 0.42, "metrics": {"candidate": {"binary_accuracy": 0.95}}}


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------------------- basics
def test_push_creates_immutable_numbered_versions_and_moves_aliases(tmp_path, saved_model):
    reg = LocalRegistry(tmp_path / "reg")
    assert reg.versions() == [] and reg.aliases() == {}
    v1 = reg.push(str(saved_model), META, extra_files={"assets.extra/calibration.json": '{"threshold": 0.42}'})
    v2 = reg.push(str(saved_model), {**META, "threshold": 0.3})
    assert (v1, v2) == ("v1", "v2") and reg.versions() == ["v1", "v2"]
    assert reg.aliases() == {"latest": "v2", "production": "v2"}
    assert reg.resolve("production") == "v2" and reg.resolve("1") == "v1"
    meta = reg.model_json("v1")
    assert meta["version"] == "v1" and meta["threshold"] == 0.42
    # each version is a loadable SavedModel with model.json next to it
    d = reg.local_dir("v1")
    assert {"saved_model.pb", MODEL_JSON, "assets.extra/calibration.json"} <= _files(d)
    assert "serving_images" in tf.saved_model.load(str(d)).signatures
    # files are read-only: a version cannot be edited by accident (root ignores the bits)
    assert not any(p.stat().st_mode & 0o222 for p in d.rglob("*") if p.is_file())
    # aliases can be moved explicitly (rollback), and unknown refs are one-line errors
    assert reg.set_alias("production", "v1") == "v1"
    assert reg.aliases() == {"latest": "v2", "production": "v1"}
    with pytest.raises(RegistryError, match="not in registry"):
        reg.resolve("v9")
    with pytest.raises(RegistryError, match="no version or alias 'staging'"):
        reg.resolve("staging")
    with pytest.raises(RegistryError, match="not a SavedModel"):
        reg.push(str(tmp_path), META)
    assert reg.versions() == ["v1", "v2"]
    assert [e["aliases"] for e in reg.entries()] == [["production"], ["latest"]]


# ------------------------------------------------------------------------ interrupted pushes
_KILLED_PUSH = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {repo!r})
    from components.registry.store import LocalRegistry
    reg = LocalRegistry({reg!r})
    where = sys.argv[1]
    if where == "after_copy":      # everything staged, killed before the version is committed
        reg.push({model!r}, {{"n": 2}}, on_staged=lambda staging: os.kill(os.getpid(), signal.SIGKILL))
    elif where == "before_aliases":  # version committed, killed before aliases move
        real_replace = os.replace
        def die(src, dst):
            if str(dst).endswith("aliases.json"):
                os.kill(os.getpid(), signal.SIGKILL)
            return real_replace(src, dst)
        os.replace = die
        reg.push({model!r}, {{"n": 2}})
""")


@pytest.mark.parametrize("where", ["after_copy", "before_aliases"])
def test_a_push_killed_midway_leaves_no_partial_version(tmp_path, saved_model, where):
    reg = LocalRegistry(tmp_path / "reg")
    reg.push(str(saved_model), {"n": 1})
    aliases_before = (tmp_path / "reg" / ALIASES_JSON).read_text()
    script = _KILLED_PUSH.format(repo=str(REPO), reg=str(tmp_path / "reg"), model=str(saved_model))
    proc = subprocess.run([sys.executable, "-c", script, where], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    # aliases untouched (same bytes), still pointing at v1
    assert (tmp_path / "reg" / ALIASES_JSON).read_text() == aliases_before
    assert reg.aliases() == {"latest": "v1", "production": "v1"}
    if where == "after_copy":
        # the fully copied files exist only in a staging directory, which listing ignores
        staging = [p for p in (tmp_path / "reg").iterdir() if p.name.startswith(STAGING_PREFIX)]
        assert len(staging) == 1 and "saved_model.pb" in _files(staging[0])
        assert reg.versions() == ["v1"]
    else:
        # a committed version is complete (model.json is written before the atomic rename)
        assert reg.versions() == ["v1", "v2"] and reg.model_json("v2")["n"] == 2
    # the registry keeps working: the next push gets a fresh number and moves the aliases
    nxt = reg.push(str(saved_model), {"n": 3})
    assert reg.aliases() == {"latest": nxt, "production": nxt} and reg.model_json(nxt)["n"] == 3


def test_an_exception_after_copying_cleans_up(tmp_path, saved_model):
    reg = LocalRegistry(tmp_path / "reg")
    reg.push(str(saved_model), {"n": 1})

    def fail(staging):
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        reg.push(str(saved_model), {"n": 2}, on_staged=fail)
    assert reg.versions() == ["v1"] and reg.aliases()["production"] == "v1"
    assert not [p for p in (tmp_path / "reg").iterdir() if p.name.startswith(STAGING_PREFIX)]


def _push_one(args):
    root, model, i = args
    return LocalRegistry(root).push(model, {"n": i})


def test_concurrent_pushes_get_distinct_complete_versions(tmp_path, saved_model):
    root = str(tmp_path / "reg")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        versions = pool.map(_push_one, [(root, str(saved_model), i) for i in range(6)])
    reg = LocalRegistry(root)
    assert sorted(versions, key=lambda v: int(v[1:])) == reg.versions() == [f"v{i}" for i in range(1, 7)]
    assert sorted(reg.model_json(v)["n"] for v in versions) == list(range(6))
    assert reg.aliases() == {"latest": "v6", "production": "v6"}  # never moved backwards


def test_registry_location_errors(tmp_path):
    with pytest.raises(RegistryError, match="gs://bucket/prefix"):
        open_registry("s3://bucket/models")
    from components.registry import vertex
    t = vertex.parse_target("vertex://my-proj/europe-west4/synthdetect?artifacts=gs://b/reg")
    assert t.model_resource == "projects/my-proj/locations/europe-west4/models/synthdetect"
    with pytest.raises(RegistryError, match="expected vertex://"):
        vertex.parse_target("vertex://my-proj/synthdetect")


# ------------------------------------------------- issue 28.9, 27.8, 26.3: what the CLI shows


def _cli(*args, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd)


def _one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "), (proc.returncode, proc.stderr)
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_aliases_json_is_readable_by_whoever_can_read_the_registry(tmp_path, saved_model, umask, mode):
    """Issue 28.9 / 27.8: aliases.json was rewritten mode 0600 on every change (a temp file from
    mkstemp): another account (serving, CI) could not resolve registry:production."""
    old = os.umask(umask)
    try:
        reg = LocalRegistry(tmp_path / "reg")
        reg.push(str(saved_model), META)
        assert (reg.root / ALIASES_JSON).stat().st_mode & 0o777 == mode
        reg.push(str(saved_model), META)
        reg.set_alias("production", "v1")
        assert (reg.root / ALIASES_JSON).stat().st_mode & 0o777 == mode
        assert (reg.root / "v1" / MODEL_JSON).stat().st_mode & 0o777 == mode & 0o555   # read-only, same readers
    finally:
        os.umask(old)


@pytest.fixture
def two_versions(tmp_path, saved_model) -> Path:
    reg = LocalRegistry(tmp_path / "reg")
    reg.push(str(saved_model), META)
    reg.push(str(saved_model), META)
    return reg.root


def test_a_dangling_alias_is_listed_and_never_promoted(two_versions, tmp_path):
    """Issue 28.9: with v2 deleted by hand, `promote production --alias staging` copied the alias to
    the missing version and `list` hid `production` and `latest` altogether."""
    import shutil
    shutil.rmtree(two_versions / "v2")
    proc = _cli("registry", "promote", "production", "--alias", "staging", "--registry", two_versions, cwd=tmp_path)
    _one_error_line(proc, "'production'", "v2", "dangling")
    assert json.loads((two_versions / ALIASES_JSON).read_text()) == {"latest": "v2", "production": "v2"}
    proc = _cli("registry", "list", "--registry", two_versions, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {v["version"]: v for v in json.loads(proc.stdout)["versions"]}
    assert rows["v1"]["status"] == "ok" and rows["v2"]["status"] == "dangling"
    assert rows["v2"]["aliases"] == ["latest", "production"]
    proc = _cli("registry", "list", "--registry", two_versions, cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    v2 = [ln for ln in proc.stdout.splitlines() if " v2 " in ln]
    assert v2 and "dangling" in v2[0], proc.stdout
    assert "dangling" in proc.stderr    # and a warning says what it means


def test_list_shows_a_string_metric_as_it_is(two_versions, tmp_path):
    """Issue 28.9: `list` crashed (ValueError: Unknown format code 'f' for str) on a hand-edited metric."""
    path = two_versions / "v1" / MODEL_JSON
    meta = json.loads(path.read_text())
    meta["metrics"]["candidate"]["binary_accuracy"] = "high"
    path.chmod(0o644)
    path.write_text(json.dumps(meta))
    proc = _cli("registry", "list", "--registry", two_versions, cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "high" in [ln for ln in proc.stdout.splitlines() if " v1 " in ln][0]


@pytest.mark.parametrize("as_json", [False, True])
def test_one_unreadable_model_json_does_not_hide_the_other_versions(two_versions, tmp_path, as_json):
    """Issue 26.3: one corrupt model.json refused the whole listing. The others are listed, the bad one
    is marked `unreadable`, and the command then exits 1 with one error line naming it."""
    path = two_versions / "v1" / MODEL_JSON
    path.chmod(0o644)
    path.write_text('{"version": "v1", "metrics": ')
    proc = _cli("registry", "list", "--registry", two_versions, *(["--json"] if as_json else []), cwd=tmp_path)
    _one_error_line(proc, str(path), "not valid JSON")
    if as_json:
        rows = {v["version"]: v for v in json.loads(proc.stdout)["versions"]}
        assert rows["v2"]["status"] == "ok" and rows["v2"]["accuracy"] == 0.95
        assert rows["v1"]["status"] == "unreadable" and "not valid JSON" in rows["v1"]["error"]
    else:
        lines = proc.stdout.splitlines()
        assert "unreadable" in [ln for ln in lines if " v1 " in ln][0]
        assert "0.950" in [ln for ln in lines if " v2 " in ln][0]


def test_promote_on_a_full_disk_is_one_line_and_leaves_no_temp_file(tmp_path, saved_model, tiny_disk):
    """Issue 28.9: `promote` on a full disk left `.aliases-*.tmp` files behind (and a traceback)."""
    from tests.conftest import fill_disk
    reg = LocalRegistry(tiny_disk / "reg")
    reg.push(str(saved_model), META)
    before = (reg.root / ALIASES_JSON).read_text()
    fill_disk(tiny_disk)
    proc = _cli("registry", "promote", "v1", "--alias", "staging", "--registry", reg.root, cwd=tmp_path)
    _one_error_line(proc, "aliases.json", "no space left")
    assert not list(reg.root.glob(".aliases-*")) and (reg.root / ALIASES_JSON).read_text() == before
