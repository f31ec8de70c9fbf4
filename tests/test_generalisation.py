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


def _tiny_union(tmp_path, n: int = 12):
    """Two families: 'synthesized' images are nearest-upsampled noise (a decoder's x2 trace),
    'real' ones plain noise; 48 px PNG (ingestion re-encodes them as JPEG q95)."""
    rng = np.random.default_rng(0)
    rows = []
    for source, family in (("ml72-playground", "ml72"), ("cifake-sd14", "cifake"), ("cifar10", "cifake")):
        for label in (("real", "synthesized") if source == "ml72-playground" else
                      ("synthesized",) if source == "cifake-sd14" else ("real",)):
            for i in range(n):
                arr = rng.integers(0, 256, [24, 24, 3]) if label == "synthesized" else rng.integers(0, 256, [48, 48, 3])
                if label == "synthesized":
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
