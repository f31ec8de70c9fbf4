"""Ingestion's plan (pass (b)): every file it writes, byte for byte, on a 3,000-row fixture.

The fixture goes in through the scan's metadata files (JSON lines, the format pass (a) writes) and
the listing's rejected records, and through `job._plan`, the step that writes members.jsonl,
quarantine.jsonl, the reading order of every shard and the planned-writes count: a refactoring of
the plan must leave all of them, and the summary, byte-identical."""
import hashlib
import json
import random
from pathlib import Path

from components.ingest import dedup
from components.ingest.job import _plan
from schemas.config import IngestConfig

SPLITS = [("train", 6), ("eval", 2), ("test", 2)]
HOLDOUTS = ("unseen", "gone", "empty")     # "empty": a held-out set no input belongs to
THUMB_HEX = 3 * dedup.THUMB_SIDE ** 2 * 2


def _phash(rng: random.Random) -> int:
    h = rng.getrandbits(64)
    while abs(h.bit_count() - 32) > 8:         # not degenerate
        h = rng.getrandbits(64)
    return h


def _flip(h: int, rng: random.Random, bits: int) -> int:
    for b in rng.sample(range(64), bits):
        h ^= 1 << b
    return h


def _thumb(rng: random.Random) -> str:
    return bytes(rng.getrandbits(8) for _ in range(THUMB_HEX // 2)).hex()


def _shift(thumb: str, by: int) -> str:
    return bytes(min(255, v + by) for v in bytes.fromhex(thumb)).hex()


def fixture_rows(n: int = 3000, seed: int = 25) -> tuple[list[list], list[dict]]:
    """`n` inputs: scan rows ("ok" and "q" rows of the scan's metadata) and listing-time records.

    Exact duplicates (equal pixel hashes), near duplicates (pHashes a few bits apart, close
    thumbnails), both with and without label conflicts; near pHashes whose colours differ (not
    duplicates); degenerate pHashes and tiny images (no near-duplicate search); held-out inputs that
    leak into training (exact and near) and held-out duplicates among themselves; files that failed
    to decode; skipped and quarantined listing-time records; several spill files."""
    rng = random.Random(seed)
    ok: list[list] = []
    bad: list[list] = []
    rejected: list[dict] = []
    sources = ("camera", "web", "gan", "diffusion")
    counter = iter(range(10 ** 6))

    def hexd() -> str:
        return f"{rng.getrandbits(256):064x}"

    def add(label="real", holdout="", pixel_sha=None, phash=None, thumb=None, pixels=None, min_side=None,
            source=None) -> list:
        i = next(counter)
        spill = f"spill-{i % 7:02d}.bin"
        row = ["ok", f"/data/{holdout or 'train'}/{label}/{i:05d}_{rng.getrandbits(16):04x}.jpg", label,
               source or rng.choice(sources), rng.choice(("", "sd-1.5", "stylegan2")), rng.choice(("face", "scene")),
               hexd(), pixel_sha or hexd(), phash if phash is not None else _phash(rng),
               pixels if pixels is not None else rng.randrange(100, 10 ** 6),
               min_side if min_side is not None else rng.randrange(16, 2000), spill, i * 1000,
               rng.randrange(100, 999), thumb if thumb is not None else _thumb(rng), holdout]
        ok.append(row)
        return row

    def label_of() -> str:
        return rng.choice(("real", "synthesized"))

    while len(ok) + len(bad) + len(rejected) < n:
        roll = rng.random() if n - len(ok) - len(bad) - len(rejected) > 6 else 0.0   # ends at n exactly
        if roll < 0.45:                                   # a plain input
            add(label_of())
        elif roll < 0.55:                                 # exact duplicates (same label; maybe tied in size)
            base = add(label_of())
            for _ in range(rng.randrange(1, 4)):
                add(base[2], pixel_sha=base[7], phash=base[8], thumb=base[14],
                    pixels=base[9] if rng.random() < 0.3 else None, min_side=base[10])
        elif roll < 0.58:                                 # exact duplicates, labels conflict
            base = add("real")
            add("synthesized", pixel_sha=base[7], phash=base[8], thumb=base[14], min_side=base[10])
        elif roll < 0.68:                                 # near duplicates (some with exact copies of their own)
            base = add(label_of())
            for _ in range(rng.randrange(1, 3)):
                near = add(base[2], phash=_flip(base[8], rng, rng.randrange(1, 6)), thumb=_shift(base[14], 2))
                if rng.random() < 0.3:
                    add(near[2], pixel_sha=near[7], phash=near[8], thumb=near[14])
        elif roll < 0.71:                                 # near duplicates, labels conflict
            base = add("real")
            add("synthesized", phash=_flip(base[8], rng, 2), thumb=base[14])
        elif roll < 0.73:                                 # near pHashes, colours far apart: not duplicates
            base = add(label_of())
            add(base[2], phash=_flip(base[8], rng, 2), thumb=_shift(base[14], 120))
        elif roll < 0.75:                                 # degenerate pHash / tiny image: never near
            base = add(label_of(), phash=(1 << 60) - 1)
            add(base[2], phash=base[8] ^ 1)
            tiny = add(label_of(), min_side=rng.randrange(1, 16))
            add(tiny[2], phash=_flip(tiny[8], rng, 1), thumb=tiny[14], min_side=tiny[10])
        elif roll < 0.81:                                 # a held-out input
            h = rng.choice(("unseen", "unseen", "gone"))
            base = add(label_of(), holdout=h)
            if rng.random() < 0.3:                        # a held-out duplicate of its own set
                add(base[2], holdout=h, pixel_sha=base[7], phash=base[8], thumb=base[14])
            elif rng.random() < 0.3:                      # a held-out near duplicate of its own set
                add(base[2] if rng.random() < 0.7 else label_of(), holdout=h, phash=_flip(base[8], rng, 2),
                    thumb=base[14])
        elif roll < 0.84:                                 # held-out exact copy of a training input: leaked
            base = add(label_of())
            add(base[2], holdout=rng.choice(("unseen", "gone")), pixel_sha=base[7], phash=base[8], thumb=base[14])
        elif roll < 0.87:                                 # held-out near duplicate of a training input: leaked
            base = add(label_of())
            leak = add(base[2], holdout=rng.choice(("unseen", "gone")), phash=_flip(base[8], rng, 3),
                       thumb=base[14])
            if rng.random() < 0.5:                        # with an exact copy of its own: leaked too
                add(leak[2], holdout=leak[15], pixel_sha=leak[7], phash=leak[8], thumb=leak[14])
        elif roll < 0.93:                                 # failed to decode
            i = next(counter)
            bad.append(["q", f"/data/train/{label_of()}/bad{i:05d}.png", label_of(), rng.choice(sources),
                        "", "scene", rng.choice(("not_an_image", "truncated_jpeg", "too_many_pixels")),
                        rng.choice(("", "OSError: broken data stream " * 20)),
                        rng.choice(("", "", "unseen"))])
        else:                                             # decided at listing time
            i = next(counter)
            status, reason = rng.choice((("skipped", "hidden"), ("skipped", "documentation"),
                                         ("quarantined", "not_a_file"), ("quarantined", "too_large")))
            rec = {"path": f"/data/train/{i:05d}.bin", "label": label_of(), "source": rng.choice(sources),
                   "generator": "", "content": "unknown", "status": status, "reason": reason,
                   "detail": "listed" if status == "quarantined" else ""}
            if rng.random() < 0.2:
                rec["holdout"] = "unseen"
            rejected.append(rec)
    rows = ok + bad
    rng.shuffle(rows)                                     # the scan's order is arbitrary
    return rows, rejected


def plan_digest(tmp: Path, opts: IngestConfig, rows: list[list], rejected: list[dict]) -> str:
    """sha256 over every file `_plan` writes and what it yields."""
    work, out, progress = tmp / "work", tmp / "out", tmp / "progress"
    for d in (work, out, progress):
        d.mkdir()
    metas = []
    for k in range(0, len(rows), 700):                    # several bundles
        p = work / f"meta-{k:05d}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in rows[k:k + 700]))
        metas.append(str(p))
    (work / "rejected.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rejected))
    yielded = list(_plan(metas, str(work), str(work / "rejected.jsonl"), opts, SPLITS, len(rows) + len(rejected),
                         str(out), str(progress), HOLDOUTS))
    h = hashlib.sha256()
    for folder in (out, work, progress):
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                h.update(f"{f.relative_to(tmp)}\n".encode())
                h.update(f.read_bytes())
    for y in yielded:
        # the summary's options are the config's (its keys and defaults may grow): not the plan's doing
        y = (y.tag, y.value) if hasattr(y, "tag") else {k: v for k, v in y.items() if k != "options"}
        h.update(json.dumps(y, default=str).replace(str(tmp), "<tmp>").encode())   # key order included
    return h.hexdigest()


EXPECTED = {
    "dedup": "2836a1b9f026a627de6070602bac3d24308e83e57aee8864b7d1420ebea78616",
    "no_dedup": "8643f21a3af9c829903380d4af23a49502412423c39f2888d8028e2aea0726ed",
}


def test_plan_output_on_3000_rows_is_unchanged(tmp_path):
    rows, rejected = fixture_rows()
    assert len(rows) + len(rejected) == 3000
    got = {}
    for name, opts in (("dedup", IngestConfig()), ("no_dedup", IngestConfig(dedup=False))):
        (tmp_path / name).mkdir()
        got[name] = plan_digest(tmp_path / name, opts, rows, rejected)
    assert got == EXPECTED
