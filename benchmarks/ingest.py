"""Ingestion at scale: `synthdetect ingest` vs a naive single-process loop and the decode-only
ceiling, on the same files, side by side in one run; plus near-duplicate search alone.

    .venv/bin/python benchmarks/ingest.py --sizes 10000,50000            # the default pair (~1 h)
    .venv/bin/python benchmarks/ingest.py --sizes 200000 --no-raw        # the 200k point (once)
    .venv/bin/python benchmarks/ingest.py --sizes 2000 --quick           # a smoke check
    .venv/bin/python benchmarks/ingest.py --archives --sizes 10000,100000  # loose vs zip vs tar parts

The image set is generated once into --data (default /tmp/synthdetect-bench) and reused: distinct
collages of random crops of ../shared/data/eval-v1 (320-512 px; even items JPEG q90 under real/, odd
items PNG under synthesized/), with ~1 % planted exact duplicates (byte copies) and ~1 % planted
near duplicates (resized by 10 % or re-encoded at JPEG q70) of earlier items. Item i depends only on
(seed, i), so the 10k set is a prefix of the 50k set, which is a prefix of the 200k set; smaller
sets are hard links into the largest (about 45 KB a file: 200k files ~ 9 GB).

Every contender runs in its own process; peak RSS is that process tree's (sampled every 0.2 s).
Writes benchmarks/results/ingest-scale.json (or --out) and prints a Markdown table. Not a test:
timings depend on the machine; the ratios, measured side by side, are what to compare.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
EVAL_V1 = REPO.parent / "shared" / "data" / "eval-v1"
PY = sys.executable
CLI = str(Path(sys.executable).parent / "synthdetect")
PLANT_EXACT, PLANT_NEAR = 0.01, 0.01
CIFAKE = REPO.parent / "shared" / "data" / "cifake"
_SIDES = (320, 512)          # generated picture sides; --archives makes tiny ones (32..64 px, like CIFAKE)


# ------------------------------------------------------------------------------------ the image set
_POOL: list[Image.Image] = []


def _load_pool(eval_v1: Path) -> None:
    rows = list(csv.DictReader(open(eval_v1 / "manifest.csv", newline="")))
    for r in rows:
        im = ImageOps.exif_transpose(Image.open(eval_v1 / r["path"])).convert("RGB")
        im.thumbnail((192, 192))
        _POOL.append(im)


def _kind(seed: int, i: int) -> tuple[str, int]:
    """("new", i) | ("exact", j) | ("near", j) with j < i an earlier new item."""
    rng = random.Random(seed * 1_000_003 + i)
    u = rng.random()
    if i >= 10 and u < PLANT_EXACT + PLANT_NEAR:
        j = rng.randrange(i)
        while _kind(seed, j)[0] != "new":
            j = rng.randrange(j + 1) if j else 0
        return ("exact" if u < PLANT_EXACT else "near"), j
    return "new", i


def _collage(seed: int, i: int) -> Image.Image:
    rng = random.Random(seed * 7_919 + i)
    w, h = rng.randint(*_SIDES), rng.randint(*_SIDES)
    canvas = Image.new("RGB", (w, h))
    gx, gy = rng.randint(1, 3), rng.randint(1, 3)
    for a in range(gx):
        for b in range(gy):
            x0, x1, y0, y1 = w * a // gx, w * (a + 1) // gx, h * b // gy, h * (b + 1) // gy
            src = _POOL[rng.randrange(len(_POOL))]
            cw, ch = rng.randint(12, min(32, src.width)), rng.randint(12, min(32, src.height))
            x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
            cx, cy = rng.randint(0, src.width - cw), rng.randint(0, src.height - ch)
            tile = src.crop((cx, cy, cx + cw, cy + ch)).resize((x1 - x0, y1 - y0), Image.BILINEAR)
            if rng.random() < 0.5:
                tile = ImageOps.mirror(tile)
            canvas.paste(tile, (x0, y0))
    return canvas


def _label(i: int) -> str:
    return "real" if i % 2 == 0 else "synthesized"


def _encode(img: Image.Image, label: str, **kw) -> tuple[bytes, str]:
    buf = io.BytesIO()
    if label == "real" or kw:
        img.save(buf, "JPEG", quality=kw.get("quality", 90))
        return buf.getvalue(), "jpg"
    img.save(buf, "PNG")
    return buf.getvalue(), "png"


def _rel(i: int, label: str, ext: str, tag: str = "") -> str:
    src = "bench-real" if label == "real" else "bench-sd"
    return f"{label}/{src}/{i // 1000:04d}/{tag}{i:07d}.{ext}"


def _make_item(args) -> tuple[int, str, str, int]:
    """Writes item i; returns (i, kind, relative path, j)."""
    seed, i, root = args
    kind, j = _kind(seed, i)
    if kind == "new":
        data, ext = _encode(_collage(seed, i), _label(i))
        rel = _rel(i, _label(i), ext)
    elif kind == "exact":
        data, ext = _encode(_collage(seed, j), _label(j))
        rel = _rel(i, _label(j), ext, "exact_")
    else:
        img = _collage(seed, j)
        rng = random.Random(seed * 31 + i)
        if rng.random() < 0.5:
            data, ext = _encode(img.resize((int(img.width * 0.9), int(img.height * 0.9)), Image.LANCZOS), _label(j),
                                quality=90)
        else:
            data, ext = _encode(img, _label(j), quality=70)
        rel = _rel(i, _label(j), ext, "near_")
    p = Path(root) / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return i, kind, rel, j


def build_set(data: Path, n: int, seed: int, eval_v1: Path, procs: int, tag: str = "") -> Path:
    """Generates (or reuses) the n-item set under data/full-<tag><seed>, and a hard-linked prefix set."""
    from tqdm import tqdm
    full = data / f"full-{tag}{seed}"
    index_path = full / "index.jsonl"
    full.mkdir(parents=True, exist_ok=True)
    have = index_path.read_text().splitlines() if index_path.exists() else []
    if len(have) < n:
        _load_pool(eval_v1)
        todo = [(seed, i, str(full / "images")) for i in range(len(have), n)]
        with mp.get_context("fork").Pool(procs) as pool, open(index_path, "a") as idx:
            for i, kind, rel, j in tqdm(pool.imap(_make_item, todo, chunksize=64), total=len(todo),
                                        desc=f"generating images {len(have)}..{n}", unit="img"):
                idx.write(json.dumps([i, kind, rel, j]) + "\n")
    sub = data / f"set-{tag}{seed}-{n}"
    if not (sub / "index.jsonl").exists():
        shutil.rmtree(sub, ignore_errors=True)
        lines = index_path.read_text().splitlines()[:n]
        for line in lines:
            _, _, rel, _ = json.loads(line)
            dst = sub / "images" / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.link(full / "images" / rel, dst)
        (sub / "index.jsonl").write_text("\n".join(lines) + "\n")
    return sub


# ------------------------------------------------------------------------------------ contenders
class TreeRSS:
    """Peak resident memory of a process and all its children, sampled every 0.2 s."""

    def __init__(self, pid: int):
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        try:
            me = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                procs = [me] + me.children(recursive=True)
                total = 0
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, total)
            except psutil.Error:
                return
            time.sleep(0.2)

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak RSS bytes of the process tree, stderr tail) of one command."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    mem = TreeRSS(proc.pid)
    out, err = proc.communicate()
    peak = mem.stop()
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed ({proc.returncode}):\n{err[-3000:]}")
    return wall, peak, out


CONTENDER = r'''
import io, sys, time, multiprocessing as mp
from pathlib import Path
from PIL import Image
files = [l for l in Path(sys.argv[2]).read_text().splitlines() if l]

def decode(path):
    with Image.open(path) as im:
        im.load()
        return im.width

if sys.argv[1] == "decode":
    procs = int(sys.argv[3])
    with mp.get_context("fork").Pool(procs) as pool:
        for _ in pool.imap_unordered(decode, files, chunksize=64):
            pass
else:  # naive: PIL decode -> RGB -> resize -> JPEG -> tf.Example -> TFRecordWriter, one process
    import tensorflow as tf
    with tf.io.TFRecordWriter(sys.argv[3], options="GZIP") as w:
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
'''


def planted_recall(index: list, members: dict[str, dict], root: Path) -> dict:
    """Planted exact/near pairs found in one cluster; distinct items merged with another distinct one."""
    rel_of = {i: rel for i, _, rel, _ in index}
    found = {"exact": [0, 0], "near": [0, 0]}
    related: dict[int, int] = {}
    for i, kind, rel, j in index:
        if kind == "new":
            continue
        related[i] = j
        a, b = members.get(str(root / rel)), members.get(str(root / rel_of[j]))
        found[kind][1] += 1
        if a and b and a["cluster_id"] and a["cluster_id"] == b["cluster_id"]:
            found[kind][0] += 1
    by_cluster: dict[str, set[int]] = {}
    for i, _kind, rel, _j in index:
        m = members.get(str(root / rel))
        if m and m["cluster_id"]:
            by_cluster.setdefault(m["cluster_id"], set()).add(related.get(i, i))
    distinct = sum(1 for _, kind, _, _ in index if kind == "new")
    merged = sum(len(s) for s in by_cluster.values() if len(s) > 1)
    return {"planted_exact_found": f"{found['exact'][0]}/{found['exact'][1]}",
            "planted_near_found": f"{found['near'][0]}/{found['near'][1]}",
            "near_recall": round(found["near"][0] / max(1, found["near"][1]), 4),
            "exact_recall": round(found["exact"][0] / max(1, found["exact"][1]), 4),
            "false_merge_rate": round(merged / max(1, distinct), 5), "distinct_items_merged": merged}


def bench_size(sub: Path, procs: int, raw: bool, work: Path, in_memory: bool) -> dict:
    index = [json.loads(line) for line in (sub / "index.jsonl").read_text().splitlines() if line]
    root = sub / "images"
    files = [str(root / rel) for _, _, rel, _ in index]
    n = len(files)
    flist = work / "files.txt"
    flist.write_text("\n".join(files) + "\n")
    script = work / "contender.py"
    script.write_text(CONTENDER)
    row: dict = {"files": n, "bytes_on_disk": sum(os.path.getsize(f) for f in files)}
    print(f"[{n}] decode-only ceiling ({procs} processes) ...", flush=True)
    t_dec, rss_dec, _ = timed([PY, str(script), "decode", str(flist), str(procs)])
    print(f"[{n}] naive single-process loop ...", flush=True)
    t_naive, rss_naive, _ = timed([PY, str(script), "naive", str(flist), str(work / "naive.tfrecord.gz")])
    row.update(decode_only_files_per_s=round(n / t_dec, 1), naive_files_per_s=round(n / t_naive, 1),
               naive_peak_rss_mb=round(rss_naive / 2 ** 20))
    modes = [("neutralised", [], procs)]
    if raw:
        modes.append(("raw", ["--set", "ingest.neutralize_format=false"], procs))
    if in_memory:
        modes.append(("neutralised, 1 process", ["--set", "ingest.workers=1"], 1))
    row["ours"] = {}
    for name, extra, workers in modes:
        out = work / f"out-{name.replace(' ', '').replace(',', '-')}"
        print(f"[{n}] synthdetect ingest ({name}) ...", flush=True)
        t_ours, rss, _ = timed([CLI, "ingest", "--input", str(root), "--output", str(out), "--no-progress",
                                "--set", f"ingest.workers={workers}", *extra])
        summary = json.loads((out / "ingest_summary.json").read_text())
        members = {m["path"]: m for m in map(json.loads, (out / "members.jsonl").read_text().splitlines())}
        row["ours"][name] = {
            "files_per_s": round(n / t_ours, 1), "wall_s": round(t_ours, 1), "peak_rss_mb": round(rss / 2 ** 20),
            "vs_naive": round(t_naive / t_ours, 2), "vs_decode_ceiling": round(t_dec / t_ours, 2),
            "summary": {k: summary[k] for k in ("inputs", "written", "exact_duplicates", "near_duplicates",
                                                "quarantined", "skipped", "accounted_for")},
            **planted_recall(index, members, root)}
        shutil.rmtree(out, ignore_errors=True)
    return row


def near_dup_search(n: int, seed: int = 0) -> dict:
    """The plan's near-duplicate search alone on n random balanced 64-bit hashes + 1 % planted copies
    at distance 1..6 (the step that took 155.6 s for 202k hashes in the previous design)."""
    sys.path.insert(0, str(REPO))
    from components.ingest import dedup
    from schemas.config import IngestConfig
    o = IngestConfig()
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2 ** 63, size=n, dtype=np.int64).astype(np.uint64) * np.uint64(2)
    planted = []
    extra = []
    for k in range(n // 100):
        a = int(rng.integers(0, n))
        h = int(hashes[a])
        for b in rng.choice(64, size=int(rng.integers(1, 7)), replace=False):
            h ^= 1 << int(b)
        extra.append(h)
        planted.append((a, n + k))
    allh = np.concatenate([hashes, np.array(extra, dtype=np.uint64)])
    t = time.perf_counter()
    pairs = dedup.near_duplicate_pairs(allh, o.near_duplicate_max_distance, o.lsh_tables, o.lsh_bits)
    roots = dedup.cluster_roots(len(allh), pairs)
    wall = time.perf_counter() - t
    found = sum(1 for a, b in planted if roots[a] == roots[b])
    return {"hashes": len(allh), "planted_pairs": len(planted), "wall_s": round(wall, 2),
            "recall": round(found / len(planted), 4)}


# ------------------------------------------------------------------------------------ archives
ARCHIVE_CONTENDER = r'''
import io, sys, tarfile, zipfile, multiprocessing as mp
from pathlib import Path
from PIL import Image
kind, procs = sys.argv[1], int(sys.argv[3])
items = [l for l in Path(sys.argv[2]).read_text().splitlines() if l]

def dec(data):
    with Image.open(io.BytesIO(data)) as im:
        im.load()

def loose(path):
    with Image.open(path) as im:
        im.load()
    return 1

def archive(path):
    n = 0
    if path.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            for zi in z.infolist():
                dec(z.read(zi)); n += 1
    else:
        with tarfile.open(path) as t:
            for ti in t:
                if ti.isreg():
                    dec(t.extractfile(ti).read()); n += 1
    return n

with mp.get_context("fork").Pool(procs) as pool:
    total = sum(pool.imap_unordered(loose if kind == "loose" else archive, items,
                                    chunksize=1 if kind != "loose" else 64))
print(total)
'''


def pack_parts(sub: Path, kind: str) -> tuple[Path, list[str]]:
    """The set's images as archive parts: every folder label/source/NNNN/ of loose files becomes
    label/source/NNNN.zip (deflated) or .tar, members named as the files. Returns (root, parts)."""
    import tarfile
    import zipfile
    root = sub / kind
    done = sub / f".{kind}-packed"      # outside the input root (a dot-file there would be an input)
    folders: dict[Path, list[Path]] = {}
    for p in sorted((sub / "images").rglob("*")):
        if p.is_file():
            folders.setdefault(p.parent, []).append(p)
    parts = []
    for folder, files in sorted(folders.items()):
        rel = folder.relative_to(sub / "images")
        part = root / rel.parent / f"{rel.name}.{kind}"
        parts.append(str(part))
        if done.exists():
            continue
        part.parent.mkdir(parents=True, exist_ok=True)
        if kind == "zip":
            with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as z:
                for f in files:
                    z.write(f, f.name)
        else:
            with tarfile.open(part, "w") as t:
                for f in files:
                    t.add(f, f.name)
    done.touch()
    return root, parts


def _ours(root: Path, out: Path, procs: int) -> tuple[float, int, dict]:
    wall, rss, _ = timed([CLI, "ingest", "--input", str(root), "--output", str(out), "--no-progress",
                          "--set", f"ingest.workers={procs}"])
    summary = json.loads((out / "ingest_summary.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    return wall, rss, {k: summary[k] for k in ("inputs", "written", "exact_duplicates", "near_duplicates",
                                               "quarantined", "skipped", "accounted_for")}


def bench_archive_inputs(name: str, inputs: dict[str, tuple[Path, list[str], str]], n: int, procs: int,
                         work: Path) -> dict:
    """inputs: {form: (input root or manifest, items for the decode ceiling, 'loose'|'archive')}."""
    script = work / "archive_contender.py"
    script.write_text(ARCHIVE_CONTENDER)
    row: dict = {"set": name, "files": n, "forms": {}}
    for form, (root, items, kind) in inputs.items():
        lst = work / f"items-{form}.txt"
        lst.write_text("\n".join(items) + "\n")
        print(f"[{name}] {form}: decode-only ceiling ...", flush=True)
        t_dec, _, out = timed([PY, str(script), kind, str(lst), str(procs)])
        print(f"[{name}] {form}: synthdetect ingest ...", flush=True)
        t, rss, summary = _ours(root, work / f"out-{form}", procs)
        row["forms"][form] = {"files_per_s": round(n / t, 1), "wall_s": round(t, 1),
                              "peak_rss_mb": round(rss / 2 ** 20), "decode_only_files_per_s": round(n / t_dec, 1),
                              "vs_decode_ceiling": round(t_dec / t, 2),
                              "decoded_by_ceiling": int(out.strip() or 0), "summary": summary}
    loose = row["forms"].get("loose")
    for r in row["forms"].values():
        r["vs_loose"] = round(r["files_per_s"] / loose["files_per_s"], 2) if loose else None
    return row


def bench_archives(args, sizes: list[int]) -> None:
    global _SIDES
    _SIDES = (32, 64)
    results: dict = {"machine": {"cpus": os.cpu_count(), "procs": args.procs,
                                 "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])}, "sets": []}
    out = args.out if args.out != DEFAULT_OUT else REPO / "benchmarks" / "results" / "ingest-archives.json"
    if sizes:
        build_set(args.data, max(sizes), args.seed, args.eval_v1, args.procs, tag="tiny-")
    for n in sizes:
        sub = build_set(args.data, n, args.seed, args.eval_v1, args.procs, tag="tiny-")
        index = [json.loads(line) for line in (sub / "index.jsonl").read_text().splitlines() if line]
        work = args.data / f"work-archives-{n}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        inputs = {"loose": (sub / "images", [str(sub / "images" / rel) for _, _, rel, _ in index], "loose")}
        for kind in ("zip", "tar"):
            root, parts = pack_parts(sub, kind)
            inputs[kind] = (root, parts, "archive")
        results["sets"].append(bench_archive_inputs(f"generated {n:,}", inputs, n, args.procs, work))
        shutil.rmtree(work, ignore_errors=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
    if (CIFAKE / "manifest.csv").is_file() and not args.no_cifake:
        work = args.data / "work-cifake"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        parts = sorted(str(p) for p in CIFAKE.glob("*/*.zip"))
        results["sets"].append(bench_archive_inputs("CIFAKE parts",
                                                    {"zip": (CIFAKE / "manifest.csv", parts, "archive")},
                                                    15000, args.procs, work))
        shutil.rmtree(work, ignore_errors=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print_archive_table(results)


def print_archive_table(r: dict) -> None:
    print("\n| set | input | ours files/s | decode-only files/s | ours / ceiling | vs loose | peak RSS MB (tree) "
          "| accounted for |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for s in r["sets"]:
        for form, o in s["forms"].items():
            print(f"| {s['set']} | {form} | {o['files_per_s']} | {o['decode_only_files_per_s']} "
                  f"| {o['vs_decode_ceiling']} "
                  f"| {o['vs_loose'] if o['vs_loose'] is not None else ''} | {o['peak_rss_mb']} | "
                  f"{o['summary']['inputs']} = {o['summary']['accounted_for']} |")
    m = r["machine"]
    print(f"\n{m['cpus']} CPUs, {m['procs']} worker processes; command: {m['command']}")


DEFAULT_OUT = REPO / "benchmarks" / "results" / "ingest-scale.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,50000", help="comma-separated set sizes")
    ap.add_argument("--data", type=Path, default=Path("/tmp/synthdetect-bench"), help="where the image sets live")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-v1", type=Path, default=EVAL_V1)
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--raw-at", type=int, default=50000, help="also measure raw mode at this size (0: never)")
    ap.add_argument("--no-raw", action="store_true")
    ap.add_argument("--in-memory", action="store_true", help="also measure ingestion in one process")
    ap.add_argument("--hashes", default="200000", help="near-duplicate search sizes ('' to skip)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--archives", action="store_true",
                    help="loose files vs zip parts vs tar parts of the same tiny generated images (and the CIFAKE "
                         "parts); writes benchmarks/results/ingest-archives.json unless --out")
    ap.add_argument("--no-cifake", action="store_true", help="with --archives: skip the CIFAKE parts")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    if not (args.eval_v1 / "manifest.csv").is_file():
        sys.exit(f"error: eval-v1 not found at {args.eval_v1} (pass --eval-v1 PATH)")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.archives:
        bench_archives(args, sizes)
        return
    results: dict = {"machine": {"cpus": os.cpu_count(), "procs": args.procs,
                                 "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])},
                     "sizes": [], "near_dup_search": []}
    args.data.mkdir(parents=True, exist_ok=True)
    build_set(args.data, max(sizes), args.seed, args.eval_v1, args.procs)
    for n in sizes:
        sub = build_set(args.data, n, args.seed, args.eval_v1, args.procs)
        work = args.data / f"work-{n}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        raw = not args.no_raw and n == args.raw_at
        results["sizes"].append(bench_size(sub, args.procs, raw, work, args.in_memory))
        shutil.rmtree(work, ignore_errors=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    for n in [int(x) for x in args.hashes.split(",") if x.strip()]:
        print(f"[near-dup search] {n} hashes ...", flush=True)
        results["near_dup_search"].append(near_dup_search(n))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)


def print_table(r: dict) -> None:
    print("\n| files | mode | ours files/s | naive files/s | decode-only files/s | ours / naive | ours / ceiling "
          "| peak RSS MB (tree) | exact found | near found | false merges |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in r["sizes"]:
        for mode, o in s["ours"].items():
            print(f"| {s['files']:,} | {mode} | {o['files_per_s']} | {s['naive_files_per_s']} | "
                  f"{s['decode_only_files_per_s']} | {o['vs_naive']} | {o['vs_decode_ceiling']} | {o['peak_rss_mb']} | "
                  f"{o['planted_exact_found']} | {o['planted_near_found']} | {o['false_merge_rate']:.3%} |")
    for s in r["near_dup_search"]:
        print(f"\nnear-duplicate search alone: {s['hashes']:,} hashes in {s['wall_s']} s, recall {s['recall']} "
              f"({s['planted_pairs']} planted pairs)")
    m = r["machine"]
    print(f"\n{m['cpus']} CPUs, {m['procs']} worker processes; command: {m['command']}")


if __name__ == "__main__":
    main()
