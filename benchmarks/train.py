"""Training benchmark, measured side by side in one run:

1. input pipeline (GZIP TFRecords -> decode -> [augmentation] -> VGG16 input) images/s at 224 px,
   on one core (private thread pool of 1) and on all cores, for each input mode
   (`model.input_mode`): resize on images stored at 256 px (ingest.max_side 256, the default),
   resize and crop on images stored at native size (ingest.max_side 0), augmentation on and off;
   data: eval-v2 (512x512, read in place; `--images` of them) if present, else data/sample;
2. training images/s of our Trainer's model fed by that pipeline (resize mode) vs a bare
   `model.fit` on in-memory tensors of the same shape (the pipeline's overhead), at 64 and 224 px.

    .venv/bin/python benchmarks/train.py [--steps 4] [--batch 16] [--images 200]

Prints a Markdown table and writes benchmarks/results/train.json. Not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PYTHONWARNINGS", "ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import tensorflow as tf

REPO = Path(__file__).resolve().parents[1]
EVAL_V2 = REPO.parent / "shared" / "data" / "eval-v2"
SPEC = {"image_raw": tf.io.FixedLenFeature([], tf.string), "label_id": tf.io.FixedLenFeature([], tf.int64)}


def ingest(out: Path, max_side: int, images: int) -> tuple[list[str], str]:
    """eval-v2 (first `images` files of each label, in place) or the bundled sample through our
    ingestion (neutralised JPEG q95, longest side `max_side`, 0: native), one split."""
    import csv

    import apache_beam as beam

    from components.ingest.job import build_ingest
    from schemas.config import IngestConfig
    source = str(REPO / "data" / "sample")
    if (EVAL_V2 / "manifest.csv").is_file():
        with open(EVAL_V2 / "manifest.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        keep = [r for label in ("real", "synthesized") for r in [r for r in rows if r["label"] == label][:images // 2]]
        out.parent.mkdir(parents=True, exist_ok=True)
        source = str(out.parent / "manifest.csv")
        with open(source, "w", newline="") as f:
            w = csv.DictWriter(f, ["path", "label"])
            w.writeheader()
            w.writerows({"path": str(EVAL_V2 / r["path"]), "label": r["label"]} for r in keep)
    with beam.Pipeline() as p:
        build_ingest(p, source, str(out), IngestConfig(dedup=False, max_side=max_side, allowed_roots=(str(EVAL_V2),)),
                     [("train", 1)])
    return sorted(str(f) for f in out.glob("Split-train/*.gz")), source


def input_rate(files: list[str], size: int, batch: int, threads: int | None, seconds: float = 10.0,
               input_mode: str = "resize", augment_prob: float | None = 0.5) -> float:
    from components.trainer.run_fn import make_dataset
    ds = make_dataset(files, SPEC, size, batch, shuffle=True, seed=0, training=True, augment_prob=augment_prob,
                      input_mode=input_mode).repeat()
    if threads:
        opts = tf.data.Options()
        opts.threading.private_threadpool_size = threads
        opts.threading.max_intra_op_parallelism = 1
        ds = ds.with_options(opts)
    it = iter(ds)
    next(it)  # warm-up
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        x, _ = next(it)
        n += int(x.shape[0])
    return n / (time.perf_counter() - t)


def train_rate(model, data, steps: int, batch: int) -> float:
    model.fit(data, steps_per_epoch=1, epochs=1, verbose=0)  # warm-up (graph tracing)
    t = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--sizes", default="64,224")
    ap.add_argument("--images", type=int, default=200, help="eval-v2 files to ingest (half per label)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train.json")
    args = ap.parse_args()
    from components.trainer.model import build_model
    from components.trainer.run_fn import make_dataset
    cores = os.cpu_count() or 1
    res: dict = {"cpus": cores, "batch": args.batch, "steps": args.steps, "rows": [], "input_pipeline_224": []}
    with tempfile.TemporaryDirectory() as tmp:
        files256, source = ingest(Path(tmp) / "s256" / "out", 256, args.images)
        native, _ = ingest(Path(tmp) / "native" / "out", 0, args.images)
        res["data"] = source if "sample" in source else f"eval-v2, {args.images} files (512x512)"
        print(f"data: {res['data']}", flush=True)
        one = None
        for stored, fs, mode in (("256", files256, "resize"), ("native", native, "resize"), ("native", native, "crop")):
            for aug in (0.5, None):
                r1 = input_rate(fs, 224, args.batch, threads=1, input_mode=mode, augment_prob=aug)
                ra = input_rate(fs, 224, args.batch, threads=None, input_mode=mode, augment_prob=aug)
                row = {"input_mode": mode, "stored": stored, "augmentation": aug is not None,
                       "images_per_s_1_core": round(r1, 1), "images_per_s_all_cores": round(ra, 1)}
                res["input_pipeline_224"].append(row)
                print(row, flush=True)
                if (stored, mode, aug) == ("256", "resize", 0.5):
                    one = r1
        for size in [int(s) for s in args.sizes.split(",")]:
            model = build_model(size, weights="none")
            ours = train_rate(model, make_dataset(files256, SPEC, size, args.batch, True, 0, training=True,
                                                  augment_prob=0.5).repeat(), args.steps, args.batch)
            model = build_model(size, weights="none")
            x = tf.random.uniform([args.batch, size, size, 3], -120, 130)
            y = tf.cast(tf.random.uniform([args.batch, 1]) > 0.5, tf.float32)
            bare = train_rate(model, tf.data.Dataset.from_tensors((x, y)).repeat(), args.steps, args.batch)
            row = {"image_size": size, "ours_images_per_s": round(ours, 2), "bare_fit_images_per_s": round(bare, 2),
                   "overhead_pct": round(100 * (bare / ours - 1), 1),
                   "input_cores_to_feed_training": round(ours / one, 3) if size == 224 else None}
            res["rows"].append(row)
            print(row, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"\ninput pipeline at 224 px ({res['data']}), images/s:\n"
          f"| input_mode | stored at | augmentation | 1 core | {cores} cores |\n| --- | --- | --- | ---: | ---: |")
    for r in res["input_pipeline_224"]:
        print(f"| {r['input_mode']} | {r['stored']} | {'on' if r['augmentation'] else 'off'} | "
              f"{r['images_per_s_1_core']} | {r['images_per_s_all_cores']} |")
    print("\n| training (resize mode, stored at 256) | ours img/s | bare model.fit img/s | overhead |\n"
          "| --- | ---: | ---: | ---: |")
    for r in res["rows"]:
        print(f"| {r['image_size']} px | {r['ours_images_per_s']} | {r['bare_fit_images_per_s']} "
              f"| {r['overhead_pct']} % |")


if __name__ == "__main__":
    np.random.seed(0)
    main()
