"""Rebuild data/sample/ from ../shared/data/eval-v1 (the only data copied into the repo).

Deterministic: picks files by sorted path, downsizes so the longest side is <= 256 px and keeps each
file's original format (JPEG stays JPEG, PNG stays PNG), then writes data/sample/manifest.csv in the
eval-v1 manifest format.

    .venv/bin/python infra/make_sample.py [--src ../shared/data/eval-v1] [--dst data/sample]
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
from pathlib import Path

from PIL import Image

# (folder in eval-v1, how many files): 40 real + 40 synthesized.
PICKS = [("real/imagenet", 30), ("real/ml72", 10), ("synthesized/sd-v1-bento", 20), ("synthesized/ml72", 20)]
MAX_SIDE = 256


def main() -> None:
    here = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=here.parent / "shared" / "data" / "eval-v1")
    ap.add_argument("--dst", type=Path, default=here / "data" / "sample")
    args = ap.parse_args()
    with open(args.src / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    out_rows = []
    for folder, count in PICKS:
        chosen = sorted((r for r in rows if r["path"].startswith(folder + "/")), key=lambda r: r["path"])
        step = max(1, len(chosen) // count)  # spread the picks over classes, not the first N
        for r in chosen[::step][:count]:
            img = Image.open(args.src / r["path"])
            fmt = img.format
            img.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
            buf = io.BytesIO()
            if fmt == "JPEG":
                img.convert("RGB").save(buf, "JPEG", quality=90)
            else:
                img.save(buf, fmt, optimize=True)
            dst = args.dst / r["path"]
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(buf.getvalue())
            out_rows.append({**r, "width": img.width, "height": img.height,
                             "sha256": hashlib.sha256(buf.getvalue()).hexdigest()})
    with open(args.dst / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(out_rows)
    total = sum(p.stat().st_size for p in args.dst.rglob("*") if p.is_file())
    print(f"wrote {len(out_rows)} images to {args.dst} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
