"""User mistakes end as one `error:` line and exit 1, never a traceback (issue 16, case 12): bad YAML
in a --set override, an unusable metadata_path, a corrupt registry aliases.json, a bad model.json next
to a --model SavedModel, and model settings that are not real integers."""
import shutil
import subprocess

import pytest

from components.registry.store import ALIASES_JSON, LocalRegistry
from schemas.config import ConfigError, load_config
from tests.conftest import REPO, SAMPLE
from tests.helpers import CLI


def _cli(*args, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


def assert_one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------ --set overrides
@pytest.mark.parametrize("command", ["config", "run"])
def test_bad_yaml_in_an_override_is_one_line(command):
    proc = _cli(command, "--set", "model.epochs=[1")
    assert_one_error_line(proc, "--set 'model.epochs=[1'", "not valid YAML")


def test_override_into_a_value_is_one_line():
    proc = _cli("config", "--set", "model=1", "--set", "model.epochs=2")
    assert_one_error_line(proc, "'model' was already set to a value")


# ------------------------------------------------------------------------------ metadata_path
@pytest.mark.parametrize("where, reason", [
    ("/proc/x/m.sqlite", "cannot create '/proc/x'"),       # a folder that cannot be created
    ("{tmp}/dir", "is a directory"),                        # a folder where the database file should be
    ("{tmp}/not-sqlite", "is not an SQLite database"),      # some other file
])
def test_unusable_metadata_path_fails_before_the_pipeline(tmp_path, where, reason):
    (tmp_path / "dir").mkdir()
    (tmp_path / "not-sqlite").write_text("hello, I am a text file, not ML Metadata\n")
    path = where.format(tmp=tmp_path)
    proc = _cli("run", "--config", REPO / "configs" / "local.yaml", "--set", f"metadata_path={path}",
                "--set", f"data.input={SAMPLE}",
                "--set", "model.weights=none", "--set", f"pipeline_root={tmp_path / 'root'}",
                "--set", f"registry={tmp_path / 'registry'}", cwd=tmp_path)
    assert_one_error_line(proc, f"metadata_path {path!r}", reason)
    assert not (tmp_path / "root").exists()  # nothing ran
    assert (tmp_path / "not-sqlite").read_text().startswith("hello")  # and nothing was overwritten


# ------------------------------------------------------------- pipeline_root and registry (issue 26.5)
@pytest.mark.parametrize("key, where, reason", [
    ("pipeline_root", "/sys/synthdetect-root", "cannot write in '/sys'"),          # not writable (even as root)
    ("pipeline_root", "{tmp}/a-file/root", "'{tmp}/a-file' is not a folder"),     # cannot be created
    ("pipeline_root", "{tmp}/a-file", "is not a folder"),                           # a file where the folder goes
    ("registry", "/sys/synthdetect-registry", "cannot write in '/sys'"),
    ("registry", "{tmp}/a-file/registry", "'{tmp}/a-file' is not a folder"),
    ("registry", "{tmp}/a-file", "is not a folder"),
])
def test_unwritable_pipeline_root_or_registry_fails_before_the_pipeline(tmp_path, key, where, reason):
    """Found by the preflight of `run` (one line, exit 1, nothing started), not by ImageExampleGen or,
    after training, by RegistryPusher."""
    (tmp_path / "a-file").write_text("a file, not a folder\n")
    path, reason = where.format(tmp=tmp_path), reason.format(tmp=tmp_path)
    sets = {"metadata_path": str(tmp_path / "mlmd" / "m.sqlite"), "pipeline_root": str(tmp_path / "root"),
            "registry": str(tmp_path / "registry"), key: path}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    proc = _cli("run", "--config", REPO / "configs" / "local.yaml", *args, "--set", f"data.input={SAMPLE}",
                "--set", "model.weights=none", "--set", "model.epochs=1", "--set", "model.image_size=32", cwd=tmp_path)
    assert_one_error_line(proc, f"{key} {path!r}", reason)
    assert not (tmp_path / "mlmd").exists() and not (tmp_path / "root").exists()   # nothing ran
    assert (tmp_path / "a-file").read_text().startswith("a file")


# --------------------------------------------------------------------------- model settings
@pytest.mark.parametrize("override, fragment", [
    ("model.epochs=true", "model.epochs: Input should be a valid integer"),
    ("model.epochs=1.0", "model.epochs: Input should be a valid integer"),
    ("model.epochs=0", "model.epochs: Input should be greater than or equal to 1"),
    ("model.batch_size=1e23", "model.batch_size: Input should be a valid integer"),     # YAML: a string
    ("model.batch_size=1.0e+18", "model.batch_size: Input should be a valid integer"),  # YAML: a float
    ("model.batch_size=100000000000000000000000", "model.batch_size: Input should be less than or equal to 4096"),
    ("model.batch_size=false", "model.batch_size: Input should be a valid integer"),
    ("model.image_size=2048", "model.image_size: Input should be less than or equal to 1024"),
    ("model.image_size='64'", "model.image_size: Input should be a valid integer"),
    ("model.dense_units=16.5", "model.dense_units: Input should be a valid integer"),
    ("model.early_stopping_patience=true", "model.early_stopping_patience: Input should be a valid integer"),
    ("model.seed=1.5", "model.seed: Input should be a valid integer"),
])
def test_model_integer_settings_must_be_real_integers_within_bounds(override, fragment):
    assert_one_error_line(_cli("config", "--set", override), fragment)


def test_model_integer_settings_in_a_config_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(f"data: {{input: {SAMPLE}}}\nmodel: {{epochs: true}}\n")
    with pytest.raises(ConfigError, match="model.epochs: Input should be a valid integer"):
        load_config(p)
    p.write_text(f"data: {{input: {SAMPLE}}}\nmodel: {{epochs: 3, batch_size: 4096, image_size: 1024}}\n")
    m = load_config(p).model
    assert (m.epochs, m.batch_size, m.image_size) == (3, 4096, 1024)
    assert type(m.epochs) is int


# ------------------------------------------------------------------------------ registry files
@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    from tests.tiny_models import tiny_model
    root = tmp_path_factory.mktemp("errors")
    model = tiny_model(root / "sm", "good")
    reg = LocalRegistry(root / "reg")
    reg.push(str(model), {"model_name": "tiny", "threshold": 0.3, "serving": {"ingest": {"max_side": 256}}})
    return root


@pytest.fixture
def corrupt_registry(pushed, tmp_path):
    reg = tmp_path / "reg"
    shutil.copytree(pushed / "reg", reg)
    return reg


@pytest.mark.parametrize("content, fragment", [
    ('{"latest": "v1", "production": ', "is not valid JSON"),     # cut short (a truncated write)
    ('["v1"]', "must hold a JSON object, found list"),
    ('{"production": 1}', "aliases must map to versions"),
])
@pytest.mark.parametrize("command", [
    ["registry", "list"], ["registry", "list", "--json"], ["registry", "show", "production"],
    ["registry", "show", "v1"], ["predict", "--model", "registry:production", str(SAMPLE / "real")],
], ids=["list", "list-json", "show-alias", "show-version", "predict"])
def test_corrupt_aliases_json_is_one_line(corrupt_registry, tmp_path, command, content, fragment):
    (corrupt_registry / ALIASES_JSON).write_text(content)
    proc = _cli(*command, "--registry", corrupt_registry, cwd=tmp_path)
    assert_one_error_line(proc, str(corrupt_registry / ALIASES_JSON), fragment)


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "is not valid JSON"),
    ("[0.5]", "must hold a JSON object"),
    ('{"threshold": "high"}', '"threshold" must be a number in [0, 1]'),
    ('{"threshold": 7}', '"threshold" must be a number in [0, 1]'),
    ('{"serving": "jpeg"}', '"serving" must be'),
    ('{"serving": {"ingest": {"quality": "best"}}}', "ingestion options in its model.json are not usable"),
])
def test_bad_model_json_next_to_a_savedmodel_is_one_line(pushed, tmp_path, content, fragment):
    model = tmp_path / "model"
    shutil.copytree(pushed / "sm", model)
    (model / "model.json").write_text(content)
    proc = _cli("predict", "--model", model, SAMPLE / "real", cwd=tmp_path)
    assert_one_error_line(proc, f"--model '{model}'", fragment)


@pytest.mark.parametrize("blessed, pushed, allow, code", [
    (True, "/reg/v1", False, None), (False, None, False, 3), (False, None, True, 0),
    (None, None, False, 1), (True, None, False, 1), (None, None, True, 1)])
def test_the_release_decision_becomes_the_exit_code(blessed, pushed, allow, code, capsys):
    """What `run` (and `submit --wait`) end with: 0 only for blessed and pushed, 3 for a refusal
    (0 with --allow-unblessed), 1 when there was no decision or a blessed model was not pushed."""
    import click

    from pipeline.cli.common import exit_with_decision
    if code is None:
        assert exit_with_decision(blessed, pushed, allow) is None
        return
    with pytest.raises((click.exceptions.Exit, click.ClickException)) as e:
        exit_with_decision(blessed, pushed, allow)
    got = e.value.exit_code
    assert got == code


# ------------------------------------------------------------------ issue 28: late or unclear
@pytest.mark.parametrize("value", ["-1", str(2**32), str(2**64)])
def test_model_seed_outside_32_bits_is_refused_by_config(value):
    """`model.seed` outside 0..2^32-1 was accepted by `config` and failed minutes later in the Trainer."""
    assert_one_error_line(_cli("config", "--set", f"model.seed={value}"), "model.seed")


def test_seed_bounds_are_inclusive():
    assert load_config(REPO / "configs" / "local.yaml", {"model": {"seed": 2**32 - 1}}).model.seed == 2**32 - 1
    assert load_config(REPO / "configs" / "local.yaml", {"model": {"seed": 0}}).model.seed == 0


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path):
    cfg = tmp_path / "latin1.yaml"
    cfg.write_bytes((REPO / "configs" / "local.yaml").read_bytes() + "# caf\xe9\n".encode("latin-1"))
    assert_one_error_line(_cli("config", "--config", cfg, cwd=tmp_path), str(cfg), "UTF-8")


def test_a_config_on_a_fifo_is_not_a_regular_file(tmp_path):
    import os
    fifo = tmp_path / "cfg.yaml"
    os.mkfifo(fifo)
    line = assert_one_error_line(_cli("config", "--config", fifo, cwd=tmp_path), str(fifo), "not a regular file")
    assert "not found" not in line


def test_a_registry_that_is_a_file_is_one_line(tmp_path):
    """`registry list --registry FILE` said "no versions"."""
    f = tmp_path / "reg.txt"
    f.write_text("not a registry")
    assert_one_error_line(_cli("registry", "list", "--registry", f, cwd=tmp_path), str(f), "not a directory")


def test_an_unusable_cache_folder_is_one_line(tmp_path):
    """SYNTHDETECT_CACHE on a path that cannot be a folder (a file) ended in a traceback."""
    import os
    blocker = tmp_path / "cache-file"
    blocker.write_text("x")
    proc = subprocess.run([CLI, "predict", "--model", "gs://synthdetect-test/models/m", str(SAMPLE / "real")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SYNTHDETECT_CACHE": str(blocker / "sub")})
    assert_one_error_line(proc, "SYNTHDETECT_CACHE", str(blocker / "sub"))
