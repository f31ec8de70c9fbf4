"""Ingestion benchmark: our Beam ingestion vs the decode-only ceiling and a naive loop, measured
side by side in one run, plus near-duplicate search alone on synthetic perceptual hashes.

    .venv/bin/python benchmarks/ingest.py                  # eval-v1 + a >=5,000-file derived set
    .venv/bin/python benchmarks/ingest.py --quick          # smaller sets, for a smoke check

Prints a Markdown table and writes benchmarks/results/ingest.json. Not a test: timings depend on
the machine; the ratios are what to compare.
"""
from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("PYTHONWARNINGS", "ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402
from tqdm import tqdm  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EVAL_V1 = REPO.parent / "shared" / "data" / "eval-v1"


class PeakRSS:
    """Peak resident memory of this process and all its children, sampled every 0.2 s."""

    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()

    def _sample(self):
        me = psutil.Process()
        while not self._stop.is_set():
            try:
                procs = [me] + me.children(recursive=True)
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.2)

    def __enter__(self):
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


# ------------------------------------------------------------------------------------ data
def build_large_set(src: Path, dst: Path, target: int, seed: int = 0) -> dict:
    """Derive >= target files from eval-v1 (rotations, crops, re-encodings), with planted exact
    duplicates (byte copies) and near duplicates (resized by 10 %, recompressed at JPEG q70)."""
    import csv
    rng = random.Random(seed)
    rows = list(csv.DictReader(open(src / "manifest.csv", newline="")))
    variants = ["orig", "rot90", "rot270", "crop80", "mirror", "q85"]
    planted_exact, planted_near = [], []
    count = 0
    for label in ("real", "synthesized"):
        (dst / label).mkdir(parents=True, exist_ok=True)
    pbar = tqdm(total=target, desc="building derived set", unit="file")
    for rep in range(10 ** 6):
        for r in rows:
            if count >= target:
                break
            img = ImageOps.exif_transpose(Image.open(src / r["path"])).convert("RGB")
            img.thumbnail((512, 512))
            v = variants[(rep + count) % len(variants)]
            if v == "rot90":
                img = img.rotate(90, expand=True)
            elif v == "rot270":
                img = img.rotate(270, expand=True)
            elif v == "crop80":
                w, h = img.size
                img = img.crop((w // 10, h // 10, w - w // 10, h - h // 10))
            elif v == "mirror":
                img = ImageOps.mirror(img)
            img = img.rotate(rep * 3 % 360, expand=False) if rep else img  # make each round distinct
            fmt = "PNG" if r["format"] == "PNG" else "JPEG"
            name = dst / r["label"] / f"{rep:03d}_{count:06d}.{'png' if fmt == 'PNG' else 'jpg'}"
            img.save(name, fmt, **({"quality": 85 if v == "q85" else 92} if fmt == "JPEG" else {}))
            count += 1
            pbar.update(1)
            if rng.random() < 0.03:  # plant an exact copy
                copy = name.with_name("exact_" + name.name)
                shutil.copyfile(name, copy)
                planted_exact.append(str(copy))
                count += 1
            elif rng.random() < 0.03:  # plant a near duplicate
                near = name.with_name("near_" + name.stem + ".jpg")
                if rng.random() < 0.5:
                    img.resize((int(img.width * 0.9), int(img.height * 0.9))).save(near, "JPEG", quality=90)
                else:
                    img.save(near, "JPEG", quality=70)
                planted_near.append(str(near))
                count += 1
        if count >= target:
            break
    pbar.close()
    return {"files": count, "planted_exact": planted_exact, "planted_near": planted_near}


def list_files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png"))


# ------------------------------------------------------------------------------------ contenders
def _decode_only(path: str) -> int:
    with Image.open(path) as im:
        im.load()
        return im.width


def decode_ceiling(files: list[str], procs: int) -> float:
    t = time.perf_counter()
    with mp.get_context("fork").Pool(procs) as pool:
        for _ in pool.imap_unordered(_decode_only, files, chunksize=16):
            pass
    return time.perf_counter() - t


def naive_loop(files: list[str], out: Path) -> float:
    """Single process: PIL decode -> RGB -> resize -> JPEG -> tf.Example -> TFRecordWriter."""
    import tensorflow as tf
    t = time.perf_counter()
    with tf.io.TFRecordWriter(str(out), options="GZIP") as w:
        for f in files:
            img = Image.open(f).convert("RGB")
            img.thumbnail((256, 256))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=95)
            label = b"real" if "/real/" in f else b"synthesized"
            ex = tf.train.Example(features=tf.train.Features(feature={
                "image_raw": tf.train.Feature(bytes_list=tf.train.BytesList(value=[buf.getvalue()])),
                "label": tf.train.Feature(bytes_list=tf.train.BytesList(value=[label]))}))
            w.write(ex.SerializeToString())
    return time.perf_counter() - t


def ours(data_input: str, out: Path, procs: int, mode: str) -> tuple[float, dict, int]:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from components.ingest.executor import build_ingest, read_summary
    from components.ingest.images import IngestOptions
    t = time.perf_counter()
    with PeakRSS() as mem:
        with beam.Pipeline(options=PipelineOptions([f"--direct_running_mode={mode}",
                                                    f"--direct_num_workers={procs if mode != 'in_memory' else 1}"])) as p:
            build_ingest(p, data_input, str(out), IngestOptions(), [("train", 7), ("eval", 3)])
    return time.perf_counter() - t, read_summary(str(out)), mem.peak


def near_dup_search_file(n: int, planted: int, procs: int) -> dict:
    """NearDuplicateRoots alone on n random 64-bit hashes plus `planted` copies at distance 1..6
    (multi-process DirectRunner; the result map comes back through a temp file)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from components.ingest.executor import NearDuplicateRoots
    from components.ingest.images import IngestOptions
    rng = np.random.default_rng(n)
    items = [(f"h{i:07d}", int(h)) for i, h in enumerate(rng.integers(0, 2 ** 63, size=n, dtype=np.int64))]
    pairs = []
    for i in range(planted):
        a = int(rng.integers(0, n))
        h = items[a][1]
        for b in rng.choice(63, size=int(rng.integers(1, 7)), replace=False):
            h ^= 1 << int(b)
        items.append((f"p{i:07d}", h))
        pairs.append((items[a][0], f"p{i:07d}"))
    o = IngestOptions()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "roots.json")
        t = time.perf_counter()
        with beam.Pipeline(options=PipelineOptions(["--direct_running_mode=multi_processing",
                                                    f"--direct_num_workers={procs}"])) as p:
            (p | beam.Create(items, reshuffle=False) | beam.Reshuffle()
             | NearDuplicateRoots(o.lsh_tables, o.lsh_bits, o.near_duplicate_max_distance)
             | beam.Map(lambda r: Path(out).write_text(json.dumps(r))))
        wall = time.perf_counter() - t
        roots = json.loads(Path(out).read_text())
    found = sum(1 for a, b in pairs if roots.get(a, a) == roots.get(b, b))
    return {"hashes": len(items), "planted_pairs": planted, "wall_s": round(wall, 1),
            "recall": round(found / planted, 4), "hashes_per_s": round(len(items) / wall)}


# ------------------------------------------------------------------------------------ main
def bench_set(name: str, data_input: str, files: list[str], procs: int, work: Path) -> dict:
    print(f"[{name}] {len(files)} files: decode-only ceiling ({procs} processes) ...", flush=True)
    t_dec = decode_ceiling(files, procs)
    print(f"[{name}] naive single-process loop ...", flush=True)
    t_naive = naive_loop(files, work / f"{name}-naive.tfrecord.gz")
    n = len(files)
    row = {"set": name, "files": n, "decode_only_files_per_s": round(n / t_dec, 1),
           "naive_files_per_s": round(n / t_naive, 1), "modes": {}}
    for mode in ("in_memory", "multi_processing"):
        print(f"[{name}] synthdetect ingestion (Beam DirectRunner {mode}) ...", flush=True)
        t_ours, summary, peak = ours(data_input, work / f"{name}-ours-{mode}", procs, mode)
        row["modes"][mode] = {"files_per_s": round(n / t_ours, 1), "vs_decode_ceiling": round(t_dec / t_ours, 2),
                              "vs_naive": round(t_naive / t_ours, 2), "peak_rss_mb": round(peak / 2 ** 20)}
        row["summary"] = {k: summary[k] for k in ("inputs", "written", "exact_duplicates", "near_duplicates",
                                                  "quarantined")}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval-v1", type=Path, default=EVAL_V1)
    ap.add_argument("--large", type=int, default=5200, help="files in the derived set (0: skip it)")
    ap.add_argument("--hashes", default="50000,200000", help="near-duplicate search sizes ('' to skip)")
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--quick", action="store_true", help="600-file derived set, 20k/50k hashes")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "ingest.json")
    args = ap.parse_args()
    if args.quick:
        args.large, args.hashes = 600, "20000,50000"
    if not (args.eval_v1 / "manifest.csv").is_file():
        sys.exit(f"error: eval-v1 not found at {args.eval_v1} (pass --eval-v1 PATH)")
    results: dict = {"machine": {"cpus": os.cpu_count(), "procs": args.procs}, "sets": [], "near_dup_search": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results["sets"].append(bench_set("eval-v1", str(args.eval_v1 / "manifest.csv"),
                                         [str(args.eval_v1 / p) for p in list_files_from_manifest(args.eval_v1)],
                                         args.procs, work))
        if args.large <= 0:
            return finish(args, results)
        derived = work / "derived"
        info = build_large_set(args.eval_v1, derived, args.large)
        row = bench_set(f"derived-{info['files']}", str(derived), list_files(derived), args.procs, work)
        members = {m["path"]: m for m in map(json.loads, (work / f"{row['set']}-ours-in_memory" / "members.jsonl")
                                            .read_text().splitlines())}
        row["planted_exact_found"] = f"{sum(members[p]['status'] == 'exact_duplicate' for p in info['planted_exact'])}/{len(info['planted_exact'])}"
        row["planted_near_found"] = f"{sum(members[p]['status'] in ('near_duplicate', 'exact_duplicate') or not members[p]['representative'] for p in info['planted_near'])}/{len(info['planted_near'])}"
        results["sets"].append(row)
    finish(args, results)


def finish(args, results: dict) -> None:
    for n in [int(x) for x in args.hashes.split(",") if x.strip()]:
        print(f"[near-dup search] {n} hashes ...", flush=True)
        results["near_dup_search"].append(near_dup_search_file(n, max(100, n // 100), args.procs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)


def list_files_from_manifest(root: Path) -> list[str]:
    import csv
    return [r["path"] for r in csv.DictReader(open(root / "manifest.csv", newline=""))]


def print_table(r: dict) -> None:
    print("\n| set | files | decode-only files/s (all cores) | naive loop files/s (1 process) | ours: Beam mode | ours files/s | ours / decode ceiling | ours / naive | peak RSS MB | written / exact / near / quarantined |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |")
    for s in r["sets"]:
        sm = s["summary"]
        extra = f" (planted exact found {s['planted_exact_found']}, near {s['planted_near_found']})" if "planted_exact_found" in s else ""
        for mode, m in s["modes"].items():
            print(f"| {s['set']} | {s['files']} | {s['decode_only_files_per_s']} | {s['naive_files_per_s']} | {mode} | "
                  f"{m['files_per_s']} | {m['vs_decode_ceiling']} | {m['vs_naive']} | {m['peak_rss_mb']} | "
                  f"{sm['written']} / {sm['exact_duplicates']} / {sm['near_duplicates']} / {sm['quarantined']}{extra} |")
    print("\n| near-dup search | hashes | planted pairs | wall s | recall | hashes/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for s in r["near_dup_search"]:
        print(f"| LSH {s['hashes']} | {s['hashes']} | {s['planted_pairs']} | {s['wall_s']} | {s['recall']} | {s['hashes_per_s']} |")
    print(f"\n{r['machine']['cpus']} CPUs, {r['machine']['procs']} worker processes")


if __name__ == "__main__":
    main()
