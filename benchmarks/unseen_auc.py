"""Both models of one pipeline run on an unseen set: eval-v1 (or any folder/manifest with labels)
scored with `synthdetect predict` against the run's two SavedModels, AUC with scikit-learn; next to
the run's own eval-split figures from `synthdetect report --json`.

    .venv/bin/python benchmarks/unseen_auc.py --config configs/paper-eval-v2.yaml \\
        [--set pipeline_root=runs/paper-v2-crop/root --set metadata_path=...] \\
        [--unseen ../shared/data/eval-v1] [--grid 5,9] --out benchmarks/results/eval-v2-crop.json

`--grid 5,9` (crop-mode runs): also the AUC with the mean over a fixed grid of crops
(`model.eval_crops`) instead of the centre crop, on the eval split and the unseen set, computed
with the models' Keras graphs and the same decode function as serving. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PYTHONWARNINGS", "ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from sklearn.metrics import roc_auc_score

from components.trainer.artifact import serving_model_dir
from pipeline.artifacts import TRAINERS, output_name
from pipeline.pipeline import EXAMPLE_GEN, EXAMPLES, MODEL

REPO = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "synthdetect")

MODELS = {role: output_name(trainer, MODEL) for role, trainer in TRAINERS.items()}


def cli(*args: str) -> str:
    out = subprocess.run([CLI, *args], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"error: synthdetect {' '.join(args[:1])} failed: {out.stderr.strip()[-500:]}")
    return out.stdout


def unseen_labels(unseen: str) -> dict[str, dict]:
    """path -> manifest row (label, source, generator) of the unseen set."""
    manifest = Path(unseen) / "manifest.csv" if Path(unseen).is_dir() else Path(unseen)
    with open(manifest, newline="") as f:
        return {os.path.normpath(str(manifest.parent / r["path"])): r for r in csv.DictReader(f)}


def aucs(rows: list[tuple[dict, float]]) -> dict:
    """Overall AUC and each synthesized (source, generator) against every real image."""
    y = np.array([r["label"] == "synthesized" for r, _ in rows])
    p = np.array([s for _, s in rows])
    out = {"n_real": int((~y).sum()), "n_synthesized": int(y.sum()), "auc": round(float(roc_auc_score(y, p)), 4)}
    groups = sorted({(r["source"], r["generator"]) for r, _ in rows if r["label"] == "synthesized"})
    for source, gen in groups:
        m = np.array([r["label"] == "real" or (r["source"], r["generator"]) == (source, gen) for r, _ in rows])
        out[f"auc_{source}/{gen or '-'}"] = round(float(roc_auc_score(y[m], p[m])), 4)
    return out


def grid_aucs(model_dir: str, images: list[bytes], labels: np.ndarray, grids: list[int]) -> dict:
    import tensorflow as tf
    import tf_keras as keras

    from components.transform.preprocessing import predict_images
    model = keras.models.load_model(model_dir, compile=False)
    size = int(model.input_shape[1])
    out = {}
    for k in [1, *grids]:
        p = np.concatenate([predict_images(model, tf.constant(images[i:i + 16]), size, "crop", k).numpy().ravel()
                            for i in range(0, len(images), 16)])
        out[f"auc_crops_{k}"] = round(float(roc_auc_score(labels, p)), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/paper-eval-v2.yaml")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--unseen", default=str(REPO.parent / "shared" / "data" / "eval-v1"))
    ap.add_argument("--grid", default="", help="crop-mode runs: eval_crops grids to compare, e.g. 5,9")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    common = ["--config", args.config, *[a for s in args.sets for a in ("--set", s)]]
    report = json.loads(cli("report", "--json", *common))
    res: dict = {"run_id": report["run_id"], "config": args.config, "sets": args.sets, "unseen": args.unseen,
                 "eval_split": {}, "unseen_set": {}, "seconds": {}}
    for m in MODELS:
        metrics, cal = report["metrics"].get(m, {}), report["calibration"].get(m, {})
        res["eval_split"][m] = {"accuracy": metrics.get("binary_accuracy"), "auc": metrics.get("auc"),
                                "calibration": cal}
    labels = unseen_labels(args.unseen)
    grids = [int(g) for g in args.grid.split(",") if g]
    with tempfile.TemporaryDirectory() as tmp:
        for m, key in MODELS.items():
            model_dir = serving_model_dir(report["artifacts"][key])
            t = time.time()
            cli("predict", "--model", model_dir, *common, args.unseen, "--out", f"{tmp}/{m}.jsonl")
            res["seconds"][f"predict_{m}"] = round(time.time() - t, 1)
            scored = [json.loads(line) for line in Path(f"{tmp}/{m}.jsonl").read_text().splitlines()]
            errors = [s for s in scored if s.get("error")]
            rows = [(labels[os.path.normpath(s["path"])], s["p_synthesized"]) for s in scored
                    if not s.get("error") and os.path.normpath(s["path"]) in labels]
            res["unseen_set"][m] = {**aucs(rows), "errors": len(errors)}
            if grids:
                res["grid"] = res.get("grid", {})
                res["grid"][m] = grid_metrics(model_dir, report, labels, args, grids)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"run {res['run_id']} ({args.config} {' '.join(args.sets)})\n")
    print("| model | eval accuracy | eval AUC | calibrated threshold: TPR / FPR | unseen AUC "
          "| per synthesized source |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for m in MODELS:
        e, u = res["eval_split"][m], res["unseen_set"][m]
        c = e["calibration"]
        per = ", ".join(f"{k[4:]} {v}" for k, v in u.items() if k.startswith("auc_"))
        print(f"| {m} | {e['accuracy']:.3f} | {e['auc']:.3f} | {c.get('tpr', float('nan')):.3f} / "
              f"{c.get('fpr', float('nan')):.3f} | {u['auc']:.3f} | {per} |")
    if grids:
        print("\n| model | set | " + " | ".join(f"AUC, {k} crop{'s' if k > 1 else ''}" for k in [1, *grids]) + " |")
        print("| --- | --- |" + " ---: |" * (1 + len(grids)))
        for m, g in res["grid"].items():
            for split, v in g.items():
                print(f"| {m} | {split} | " + " | ".join(str(v[f'auc_crops_{k}']) for k in [1, *grids]) + " |")


def grid_metrics(model_dir: str, report: dict, labels: dict, args, grids: list[int]) -> dict:
    """AUC with 1 vs `grids` crops on the eval split (as stored) and the unseen set (prepared as
    `synthdetect predict` does, with the run's ingestion options)."""
    from components.scoring.examples import read_split
    from components.ingest.images import decode_file
    from components.ingest.listing import ImageInput
    from schemas.config import IngestConfig
    images, y, _ = read_split(report["artifacts"][output_name(EXAMPLE_GEN, EXAMPLES)], "eval")
    out = {"eval_split": grid_aucs(model_dir, images, y, grids)}
    from pipeline.cli.common import load
    opts = IngestConfig.from_dict(load(args.config, tuple(args.sets)).ingest.model_dump())
    imgs, ys = [], []
    for path, row in labels.items():
        status, dec = decode_file(ImageInput(path, row["label"]), opts)
        if status == "ok":
            imgs.append(dec.example.features.feature["image_raw"].bytes_list.value[0])
            ys.append(row["label"] == "synthesized")
    out["unseen_set"] = grid_aucs(model_dir, imgs, np.array(ys), grids)
    return out


if __name__ == "__main__":
    main()
