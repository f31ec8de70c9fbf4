"""The figures of docs/results/generalisation.md for one pipeline run, both models:
eval accuracy and AUC (TFMA, eval split), TPR at the release threshold (FPR <= target on the eval
real images), per-source in-distribution figures from ReleaseCheck's eval scores (AUC inside a source
that has both labels; a single-label source against all eval images of the other label, the basis the
held-out gate uses), and every held-out set's figures from the release check (AUC, basis, TPR at
FPR <= target, accuracy at 0.5, gap).

    .venv/bin/python benchmarks/holdout_figures.py --config configs/paper-eval-v1-leave-out.yaml \\
        [--set ...] [--run RUN_ID] [--out benchmarks/results/holdout-x.json]

Reads the run back from ML Metadata (pipeline/artifacts.py); prints JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from components.evaluator import calibration as cal
from pipeline.artifacts import RunRecord
from pipeline.cli.common import parse_sets
from schemas.config import load_config


def per_source(scores: dict, model: str) -> dict:
    """{source: {n, auc, basis}} on the eval split from the release check's scores."""
    y = np.asarray(scores["labels"])
    p = np.asarray(scores["scores"][model]["clean"])
    src = np.asarray([e.get("source", "") for e in scores["examples"]])
    out = {}
    for s in sorted(set(src)):
        m = src == s
        if len(set(y[m])) == 2:
            basis, yy, pp = "within the source", y[m], p[m]
        elif y[m][0] == 1:
            basis, yy, pp = "its synthesized vs all eval real", np.r_[y[m], y[y == 0]], np.r_[p[m], p[y == 0]]
        else:
            basis, yy, pp = "all eval synthesized vs its real", np.r_[y[y == 1], y[m]], np.r_[p[y == 1], p[m]]
        out[s] = {"n": int(m.sum()), "auc": cal.roc_curve(yy, pp)["auc"], "basis": basis,
                  "accuracy": cal.rates(y[m], p[m], 0.5)["accuracy"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--run", default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    cfg = load_config(a.config, parse_sets(tuple(a.sets)))
    run = RunRecord.load(cfg.metadata_path, cfg.pipeline_name, a.run)
    outputs = run.outputs()
    check, scores = outputs.release_check(), outputs.release_scores()
    res = {"run_id": run.run_id, "config": a.config, "sets": a.sets, "blessed": check["blessed"],
           "reasons": check["reasons"], "ingest_holdout_sets": (outputs.ingest_summary() or {}).get("holdout_sets"),
           "models": {}}
    for m in ("candidate", "baseline"):
        tf_m, c = check["tfma"]["metrics"][m], check["calibration"][m]
        res["models"][m] = {
            "eval": {"n": tf_m.get("example_count"), "accuracy": tf_m.get("binary_accuracy"), "auc": tf_m.get("auc"),
                     "auc_from_scores": cal.roc_curve(scores["labels"], scores["scores"][m]["clean"])["auc"],
                     "tpr_at_release_threshold": c["tpr"], "fpr_at_release_threshold": c["fpr"],
                     "threshold": c["threshold"]},
            "eval_by_source": per_source(scores, m),
            "holdout": {name: {k: v for k, v in f[m].items() if k != "roc"}
                        for name, f in (check.get("holdout") or {}).items()},
        }
    text = json.dumps(cal.json_safe(res), indent=2)
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
