"""benchmarks/generalisation.py: a tiny leave-one-family-out run produces its table row."""
from __future__ import annotations

import csv
import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from tests.helpers import REPO

pytest.importorskip("tensorflow")


def _bench():
    spec = importlib.util.spec_from_file_location("generalisation", REPO / "benchmarks" / "generalisation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tiny_union(tmp_path, n: int = 12, flip_cifake: bool = False):
    """Two families: 'synthesized' images are nearest-upsampled noise (a decoder's x2 trace),
    'real' ones plain noise; 48 px PNG (ingestion re-encodes them as JPEG q95). `flip_cifake`: the
    other way round in cifake (its real images upsampled), so the families' cues point opposite ways."""
    rng = np.random.default_rng(0)
    rows = []
    for source, family in (("ml72-playground", "ml72"), ("cifake-sd14", "cifake"), ("cifar10", "cifake")):
        for label in (("real", "synthesized") if source == "ml72-playground" else
                      ("synthesized",) if source == "cifake-sd14" else ("real",)):
            for i in range(n):
                upsampled = (label == "synthesized") != (flip_cifake and family == "cifake")
                arr = rng.integers(0, 256, [24, 24, 3]) if upsampled else rng.integers(0, 256, [48, 48, 3])
                if upsampled:
                    arr = np.repeat(np.repeat(arr, 2, axis=0), 2, axis=1)
                path = tmp_path / "imgs" / family / label / f"{source}-{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(arr.astype(np.uint8)).save(path)
                rows.append({"path": str(path.relative_to(tmp_path)), "label": label, "source": source,
                             "generator": "", "content": ""})
    manifest = tmp_path / "union.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "label", "source", "generator", "content"])
        w.writeheader()
        w.writerows(rows)
    return manifest


def test_a_tiny_leave_one_out_run_produces_the_table_row(tmp_path, capsys):
    bench = _bench()
    manifest = _tiny_union(tmp_path)
    out = tmp_path / "result.json"
    args = ["run", "--manifest", str(manifest), "--workdir", str(tmp_path / "work"), "--out", str(out),
            "--families", "cifake", "--models", "baseline", "--filters", "npr", "--epochs", "1",
            "--batch-size", "8", "--eval-crops", "1"]
    assert bench.main(args) == 0
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert (row["left_out"], row["model"], row["filter"], row["augment"]) == ("cifake", "baseline", "npr", False)
    # held out: every cifake image (both labels, never trained on); eval: the other family's eval split
    assert row["holdout"]["n"] == 24 and row["holdout"]["n_synthesized"] == 12
    assert 0 < row["eval"]["n"] < 24 and row["train_n"] == 24 - row["eval"]["n"]
    assert 0.0 <= row["holdout"]["auc"] <= 1.0
    examples = result["settings"]["examples"]
    assert examples["cifake/train/real"] + examples["cifake/eval/real"] == 12
    printed = capsys.readouterr().out
    assert "| left out (held-out n) | baseline · npr |" in printed
    assert f"| cifake (24) | {row['holdout']['auc']:.2f} / {row['eval']['auc']:.2f} |" in printed
    # resumable: a rerun keeps the row and trains nothing
    assert bench.main(args) == 0
    assert json.loads(out.read_text())["rows"] == result["rows"]


def _row(family: str, model: str, flt: str, held: float, ev: float, n: int = 100) -> dict:
    return {"left_out": family, "model": model, "filter": flt, "augment": False,
            "holdout": {"auc": held, "n": n}, "eval": {"auc": ev, "n": 50}}


def test_plot_draws_every_selected_column_and_refuses_an_empty_selection(tmp_path, capsys):
    bench = _bench()
    results = [{"settings": {"image_size": 32, "epochs": 5},
                "rows": [_row(f, m, "none", 0.6, 0.8) for f in ("sd-v1", "ml72") for m in ("finetune", "baseline")]},
               {"settings": {"image_size": 64, "epochs": 12}, "rows": [_row("sd-v1", "finetune", "none", 0.7, 0.85)]}]
    paths = []
    for i, r in enumerate(results):
        paths.append(tmp_path / f"r{i}.json")
        paths[-1].write_text(json.dumps(r))
    out = tmp_path / "docs" / "gen.png"
    assert bench.main(["plot", *map(str, paths), "--select", "finetune:none", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.format == "PNG"
    assert not list(out.parent.glob("*.tmp-*"))
    series = bench.plot_series(list(zip(("r0", "r1"), results, strict=True)), {"finetune:none"})
    # one series per (file, column): the 64 px file adds its own, the baseline is not selected
    assert [label for label, _ in series] == ["finetune · none, 32 px, 5 ep", "finetune · none, 64 px, 12 ep"]
    assert sorted(series[0][1]) == ["ml72", "sd-v1"] and sorted(series[1][1]) == ["sd-v1"]
    with pytest.raises(SystemExit, match="no rows to plot"):
        bench.main(["plot", str(paths[0]), "--select", "finetune:npr", "--out", str(tmp_path / "x.png")])


def test_plot_keeps_files_with_the_same_settings_apart():
    bench = _bench()
    a = {"settings": {"image_size": 64, "epochs": 12}, "rows": [_row("sd-v1", "finetune", "none", 0.6, 0.8)]}
    b = {"settings": {"image_size": 64, "epochs": 12}, "rows": [_row("sd-v1", "finetune", "none", 0.7, 0.9)]}
    series = bench.plot_series([("seed1", a), ("seed2", b)], None)
    assert [label for label, _ in series] == ["finetune · none, 64 px, 12 ep",
                                              "finetune · none, 64 px, 12 ep [seed2]"]
    assert [cells["sd-v1"]["holdout"]["auc"] for _, cells in series] == [0.6, 0.7]


def test_plot_values_mean_only_over_a_complete_column():
    bench = _bench()
    fams = ["sd-v1", "ml72", "cifake"]
    cells = {f: _row(f, "finetune", "none", h, e) for f, h, e in (("sd-v1", 0.6, 0.8), ("ml72", 0.7, 0.9),
                                                                 ("cifake", 0.5, 0.7))}
    held, ev = bench.plot_values(cells, fams)
    assert held == pytest.approx([0.6, 0.7, 0.5, 0.6]) and ev == pytest.approx([0.8, 0.9, 0.7, 0.8])
    cells["ml72"]["holdout"]["auc"] = None          # a set with one label has no AUC
    del cells["cifake"]                             # a family this column did not run
    held, ev = bench.plot_values(cells, fams)
    assert held[0] == 0.6 and all(np.isnan(held[1:])) and ev[:2] == [0.8, 0.9] and np.isnan(ev[3])


def test_cues_measure_each_familys_sources_and_high_frequency_energy(tmp_path, capsys):
    """ml72's synthesized images are 2x nearest-upsampled noise (less high-frequency energy than
    its real white noise), cifake's real ones are: the energy's AUC is ~0 in ml72 and ~1 in cifake,
    and a spectrum probe trained on cifake alone (the other family's train split) ranks ml72
    upside down — it would not if held-out images leaked into its training."""
    bench = _bench()
    manifest = _tiny_union(tmp_path, flip_cifake=True)
    out = tmp_path / "cues.json"
    args = ["cues", "--manifest", str(manifest), "--workdir", str(tmp_path / "work"), "--out", str(out)]
    assert bench.main(args) == 0
    result = json.loads(out.read_text())
    assert result["crop"] == 32 and sorted(result["families"]) == ["cifake", "ml72"]
    for fam, direction in (("ml72", -1), ("cifake", 1)):
        e = result["families"][fam]
        assert e["real"]["n"] == e["synthesized"]["n"] == 12
        assert e["real"]["formats"] == ["PNG"] and e["real"]["max_side_median"] == 48
        assert e["real"]["jpeg_quality_median"] is None
        assert direction * (e["synthesized"]["hf_energy_mean"] - e["real"]["hf_energy_mean"]) > 0
        assert (e["hf_auc"] < 0.1) if direction < 0 else (e["hf_auc"] > 0.9)
        assert e["spectrum_probe"]["holdout"] < 0.1   # trained on the other family, whose cue points the other way
        assert e["spectrum_probe"]["eval"] > 0.9      # in distribution
    assert "| ml72 | PNG, 48 px | PNG, 48 px |" in capsys.readouterr().out


def test_jpeg_quality_is_read_from_the_quantisation_table(tmp_path):
    bench = _bench()
    for q in (1, 10, 19, 33, 50, 67, 75, 95, 96, 100):
        path = tmp_path / f"q{q}.jpg"
        Image.fromarray(np.zeros([16, 16, 3], np.uint8)).save(path, quality=q)
        with Image.open(path) as im:
            assert bench.jpeg_quality(im) == q
    Image.fromarray(np.zeros([16, 16, 3], np.uint8)).save(tmp_path / "x.png")
    with Image.open(tmp_path / "x.png") as im:
        assert bench.jpeg_quality(im) is None
