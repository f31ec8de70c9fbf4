"""Training benchmark, measured side by side in one run:

1. input pipeline (GZIP TFRecords -> decode -> augmentation -> VGG16 input) images/s, on one core
   (private thread pool of 1) and on all cores, at 224 px with augmentation on;
2. training images/s of our Trainer's model fed by that pipeline vs a bare `model.fit` on
   in-memory tensors of the same shape (the pipeline's overhead), at 64 and 224 px.

    .venv/bin/python benchmarks/train.py [--steps 4] [--batch 16]

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

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SPEC = {"image_raw": tf.io.FixedLenFeature([], tf.string), "label_id": tf.io.FixedLenFeature([], tf.int64)}


def ingest_sample(out: Path) -> list[str]:
    """The bundled sample through our ingestion (neutralised JPEG, longest side 256)."""
    import apache_beam as beam

    from components.ingest.executor import build_ingest
    from components.ingest.images import IngestOptions
    with beam.Pipeline() as p:
        build_ingest(p, str(REPO / "data" / "sample"), str(out), IngestOptions(dedup=False), [("train", 1)])
    return sorted(str(f) for f in out.glob("Split-train/*.gz"))


def input_rate(files: list[str], size: int, batch: int, threads: int | None, seconds: float = 15.0) -> float:
    from components.trainer.run_fn import make_dataset
    ds = make_dataset(files, SPEC, size, batch, shuffle=True, seed=0, augment_prob=0.5).repeat()
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
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "train.json")
    args = ap.parse_args()
    from components.trainer.model import build_model
    from components.trainer.run_fn import make_dataset
    cores = os.cpu_count() or 1
    res: dict = {"cpus": cores, "batch": args.batch, "steps": args.steps, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        files = ingest_sample(Path(tmp))
        one = input_rate(files, 224, args.batch, threads=1)
        allc = input_rate(files, 224, args.batch, threads=None)
        res["input_pipeline_224_aug"] = {"images_per_s_1_core": round(one, 1), "images_per_s_all_cores": round(allc, 1)}
        print(f"input pipeline at 224 px, augmentation on: {one:.1f} img/s on 1 core, {allc:.1f} img/s on {cores}")
        for size in [int(s) for s in args.sizes.split(",")]:
            model = build_model(size, weights="none")
            ours = train_rate(model, make_dataset(files, SPEC, size, args.batch, True, 0, augment_prob=0.5).repeat(),
                              args.steps, args.batch)
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
    ip = res["input_pipeline_224_aug"]
    print(f"\n| measurement | value |\n| --- | ---: |\n| input pipeline, 224 px + augmentation, 1 core | {ip['images_per_s_1_core']} img/s |"
          f"\n| input pipeline, 224 px + augmentation, {cores} cores | {ip['images_per_s_all_cores']} img/s |")
    for r in res["rows"]:
        print(f"| training {r['image_size']} px: our Trainer's pipeline | {r['ours_images_per_s']} img/s |"
              f"\n| training {r['image_size']} px: bare model.fit on in-memory tensors | {r['bare_fit_images_per_s']} img/s |"
              f"\n| training {r['image_size']} px: input pipeline overhead | {r['overhead_pct']} % |")


if __name__ == "__main__":
    np.random.seed(0)
    main()
