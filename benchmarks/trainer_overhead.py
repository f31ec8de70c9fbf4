"""What the Trainer's input pipeline and long-job callbacks cost, side by side in one run (issue 22):

  ours: `make_dataset` over GZIP TFRecords (decode, resize to the model input) feeding `model.fit`
        with the callbacks `run_fn` adds (BackupAndRestore saving weights + optimizer every epoch,
        the epoch journal, the progress line);
  bare: the same model's `model.fit` on in-memory tensors of the same shape, no callbacks.

Both run the same number of steps per epoch and epochs, alternately (ours, bare, ours, bare, ...)
so that a noisy shared machine slows both alike; the median epoch time of each is reported.

    .venv/bin/python benchmarks/trainer_overhead.py --examples runs/paper-cifake/root/ImageExampleGen/examples/1 \
        [--size 32] [--batch 32] [--steps 100] [--rounds 3]

Without --examples, the bundled sample is ingested first. Prints a Markdown table, writes
benchmarks/results/trainer_overhead.json. Not a test.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tensorflow as tf
import tf_keras as keras

REPO = Path(__file__).resolve().parents[1]
SPEC = {"image_raw": tf.io.FixedLenFeature([], tf.string), "label_id": tf.io.FixedLenFeature([], tf.int64)}


class _EpochTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t)


def _sample_examples(tmp: str) -> str:
    import apache_beam as beam

    from schemas.config import IngestConfig
    from components.ingest.job import build_ingest
    with beam.Pipeline() as p:
        build_ingest(p, str(REPO / "data" / "sample"), tmp, IngestConfig(dedup=False), [("train", 1)])
    return tmp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", help="an ingestion output (Split-train/ inside); default: the bundled sample")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=100, help="steps per epoch")
    ap.add_argument("--rounds", type=int, default=3, help="epochs of each, alternately")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "trainer_overhead.json")
    args = ap.parse_args()

    from components.trainer.model import build_model
    from components.trainer.run_fn import EpochJournal, EpochProgress, make_dataset

    with tempfile.TemporaryDirectory() as tmp:
        examples = args.examples or _sample_examples(os.path.join(tmp, "sample"))
        files = sorted(str(p) for p in Path(examples).glob("Split-train/*.gz"))
        ds = make_dataset(files, SPEC, args.size, args.batch, True, 0, training=True, augment_prob=None).repeat()
        ours_model = build_model(args.size, weights="none")
        bare_model = build_model(args.size, weights="none")
        x = tf.random.uniform([args.batch, args.size, args.size, 3], -120, 130)
        y = tf.cast(tf.random.uniform([args.batch, 1]) > 0.5, tf.float32)
        bare_ds = tf.data.Dataset.from_tensors((x, y)).repeat()
        ours_t, bare_t = _EpochTimes(), _EpochTimes()
        ckpt = os.path.join(tmp, "ckpt")
        ours_cb = [keras.callbacks.BackupAndRestore(ckpt, save_freq="epoch", delete_checkpoint=False),
                   EpochJournal(ckpt), EpochProgress("benchmark", args.rounds), ours_t]
        ours_model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0)          # warm-up: tracing, file handles
        bare_model.fit(bare_ds, steps_per_epoch=2, epochs=1, verbose=0)
        for r in range(args.rounds):
            # epochs continue across calls: BackupAndRestore resumes from its own checkpoint each time
            ours_model.fit(ds, steps_per_epoch=args.steps, epochs=r + 1, verbose=0, callbacks=ours_cb)
            bare_model.fit(bare_ds, steps_per_epoch=args.steps, epochs=1, verbose=0, callbacks=[bare_t])
        ours_s, bare_s = statistics.median(ours_t.times), statistics.median(bare_t.times)
    res = {"image_size": args.size, "batch": args.batch, "steps_per_epoch": args.steps, "rounds": args.rounds,
           "data": args.examples or "data/sample", "cpus": os.cpu_count(),
           "ours_epoch_s": [round(t, 2) for t in ours_t.times], "bare_epoch_s": [round(t, 2) for t in bare_t.times],
           "ours_images_per_s": round(args.steps * args.batch / ours_s, 1),
           "bare_images_per_s": round(args.steps * args.batch / bare_s, 1),
           "ratio_ours_to_bare": round(bare_s / ours_s, 3)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"| {args.size} px, batch {args.batch}, {args.steps} steps x {args.rounds} epochs | img/s (median epoch) |\n"
          f"| --- | ---: |\n| ours: TFRecords + decode + checkpoint/journal/progress callbacks | "
          f"{res['ours_images_per_s']} |\n| bare model.fit on in-memory tensors | {res['bare_images_per_s']} |\n"
          f"| ratio ours / bare | {res['ratio_ours_to_bare']} |")


if __name__ == "__main__":
    main()
