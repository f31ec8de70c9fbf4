"""Duplicate detection primitives (pure functions; the Beam wiring is in executor.py).

* Exact duplicates: same decoded, oriented RGB pixels (sha256 of size + pixel bytes), so a PNG and a
  JPEG-q100 of one picture are exact duplicates only if their pixels match.
* Near duplicates: 64-bit perceptual hashes (imagehash.phash) within a Hamming distance, found with
  bit-sampling LSH: table t keys an image by `lsh_bits` fixed random bit positions of its hash; two
  hashes at distance d share a table key with probability (1 - d/64)^bits, so `lsh_tables` tables
  find a pair with probability 1 - (1 - (1 - d/64)^bits)^tables (0.99+ for d <= 6 with 20 x 16).
  Candidates in a bucket are verified exactly; verified pairs are joined into clusters (union-find).
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

import imagehash
import numpy as np
from PIL import Image

HASH_BITS = 64


def pixel_hash(rgb: Image.Image) -> str:
    h = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()


def perceptual_hash(rgb: Image.Image) -> int:
    bits = imagehash.phash(rgb, hash_size=8).hash.flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def lsh_positions(tables: int, bits: int, seed: int = 0) -> np.ndarray:
    """[tables, bits] fixed bit positions (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(HASH_BITS, size=bits, replace=False) for _ in range(tables)])


def lsh_keys(phash: int, positions: np.ndarray) -> list[tuple[int, int]]:
    """(table, key) for every table: the sampled bits of `phash` packed into an int."""
    bitarr = np.array([(phash >> (HASH_BITS - 1 - i)) & 1 for i in range(HASH_BITS)], dtype=np.uint64)
    weights = (np.uint64(1) << np.arange(positions.shape[1], dtype=np.uint64))
    keys = (bitarr[positions] * weights).sum(axis=1)
    return [(t, int(k)) for t, k in enumerate(keys)]


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def close_pairs(members: Sequence[tuple[str, int]], max_distance: int) -> list[tuple[str, str]]:
    """Verified pairs (id_a < id_b) among the members of one LSH bucket."""
    if len(members) < 2:
        return []
    ids = [m[0] for m in members]
    hashes = np.array([m[1] for m in members], dtype=np.uint64)
    x = hashes[:, None] ^ hashes[None, :]
    # popcount of uint64 via byte view
    dist = np.unpackbits(x.view(np.uint8).reshape(len(ids), len(ids), 8), axis=2).sum(axis=2)
    out = []
    ii, jj = np.nonzero(np.triu(dist <= max_distance, k=1))
    for i, j in zip(ii.tolist(), jj.tolist()):
        a, b = ids[i], ids[j]
        if a != b:
            out.append((a, b) if a < b else (b, a))
    return out


def clusters(nodes: Iterable[str], edges: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Union-find: node -> cluster root (the smallest node id in its component)."""
    parent: dict[str, str] = {n: n for n in nodes}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {n: find(n) for n in list(parent)}


def split_for(key: str, split_buckets: Sequence[tuple[str, int]]) -> str:
    """Deterministic split: sha256(key) into hash buckets (the key of a cluster's representative)."""
    total = sum(b for _, b in split_buckets)
    bucket = int(hashlib.sha256(key.encode()).hexdigest(), 16) % total
    for name, b in split_buckets:
        if bucket < b:
            return name
        bucket -= b
    raise AssertionError("unreachable")
