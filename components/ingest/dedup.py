"""Duplicate detection primitives (pure functions, numpy; the planning step in plan.py uses them).

* Exact duplicates: same decoded, oriented RGB pixels (sha256 of size + pixel bytes), so a PNG and a
  JPEG-q100 of one picture are exact duplicates only if their pixels match.
* Near duplicates: 64-bit perceptual hashes (imagehash.phash, `perceptual_hash`) within a Hamming distance, found with
  bit-sampling LSH: table t keys an image by `lsh_bits` fixed random bit positions of its hash; two
  hashes at distance d share a table key with probability (1 - d/64)^bits, so `lsh_tables` tables
  find a pair with probability 1 - (1 - (1 - d/64)^bits)^tables (0.9994 for d = 6 with 32 x 16).
  Candidates sharing a key are verified exactly, then must also agree in colour (4x4 RGB
  thumbnails, `color_close`: pHash reads luminance only); verified pairs are joined into clusters
  (connected components). All of it is vectorised over the whole set of hashes at once.
* Degenerate hashes take no part in near-duplicate search (exact duplicates still apply): pHash
  sets the bits of the DCT coefficients above their median, so a picture with detail has exactly 32
  of 64 bits set; flat or nearly flat pictures (ties at the median) get hashes like 0x0 or 0x8000…
  that would match every other flat picture. So do images whose shorter side is below
  MIN_NEAR_DUP_SIDE pixels (a 1-pixel strip is upsampled to the 32x32 pHash grid).
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import imagehash
import numpy as np
from PIL import Image

HASH_BITS = 64
MIN_NEAR_DUP_SIDE = 16
MAX_BIT_IMBALANCE = 8          # |bits set - 32| above this: degenerate
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def pixel_hash(rgb: Image.Image) -> str:
    return pixel_hash_array(np.asarray(rgb.convert("RGB")))


def pixel_hash_array(pixels: np.ndarray) -> str:
    """sha256 of "<width>x<height>:" + the RGB bytes, row by row (same as hashing Image.tobytes())."""
    h = hashlib.sha256(f"{pixels.shape[1]}x{pixels.shape[0]}:".encode())
    h.update(np.ascontiguousarray(pixels, dtype=np.uint8).data)
    return h.hexdigest()


PHASH_GRID = 32   # imagehash.phash: DCT of a 32 x 32 grey image, its 8 x 8 low frequencies


def perceptual_hash(rgb: Image.Image | np.ndarray) -> int:
    """imagehash.phash (8 x 8 DCT bits of a 32 x 32 grey image) as a 64-bit int.

    The picture is turned grey and area-averaged to the 32 x 32 grid with OpenCV before phash, whose
    own Pillow LANCZOS step then has nothing left to do: the same antialiased downscale in a sixth of
    the time (phash was a third of all per-file work). Copies re-encoded at JPEG q70 or resized by
    90 % stay within 6 bits as often as with phash's own resize (measured on 400 benchmark images)."""
    import cv2
    pixels = np.ascontiguousarray(np.asarray(rgb))
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY) if pixels.ndim == 3 else pixels
    if grey.shape != (PHASH_GRID, PHASH_GRID):
        grey = cv2.resize(grey, (PHASH_GRID, PHASH_GRID), interpolation=cv2.INTER_AREA)
    bits = imagehash.phash(Image.fromarray(grey), hash_size=8).hash.flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


THUMB_SIDE = 4


def color_thumbnail(pixels: np.ndarray) -> bytes:
    """4 x 4 RGB area averages (48 bytes). pHash sees only the luminance structure of a picture, so
    two nearly flat pictures of different colours can share a hash; copies of one picture (resized,
    recompressed) keep their thumbnail within a level or two."""
    import cv2
    return cv2.resize(np.ascontiguousarray(pixels), (THUMB_SIDE, THUMB_SIDE), interpolation=cv2.INTER_AREA).tobytes()


def color_close(thumbs: np.ndarray, pairs: np.ndarray, max_diff: float) -> np.ndarray:
    """The pairs whose thumbnails ([n, 48] uint8) differ by at most `max_diff` levels on average."""
    if not len(pairs) or max_diff >= 255:
        return pairs
    diff = np.abs(thumbs[pairs[:, 0]].astype(np.int16) - thumbs[pairs[:, 1]].astype(np.int16)).mean(axis=1)
    return pairs[diff <= max_diff]


def popcount(x: np.ndarray) -> np.ndarray:
    """Bits set in each uint64."""
    x = np.ascontiguousarray(x, dtype=np.uint64)
    return _POPCOUNT8[x.view(np.uint8).reshape(-1, 8)].sum(axis=1, dtype=np.int64)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def is_degenerate(phash: int, min_side: int) -> bool:
    return abs(phash.bit_count() - HASH_BITS // 2) > MAX_BIT_IMBALANCE or min_side < MIN_NEAR_DUP_SIDE


def lsh_positions(tables: int, bits: int, seed: int = 0) -> np.ndarray:
    """[tables, bits] fixed bit positions (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(HASH_BITS, size=bits, replace=False) for _ in range(tables)])


def _table_keys(hashes: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """[tables, n] uint64 keys: the sampled bits of each hash packed into an integer. Memory is
    O(tables x n), one table and one bit at a time."""
    keys = np.zeros((positions.shape[0], len(hashes)), dtype=np.uint64)
    one = np.uint64(1)
    for t, row in enumerate(positions):
        for j, pos in enumerate(row):
            keys[t] |= ((hashes >> np.uint64(HASH_BITS - 1 - int(pos))) & one) << np.uint64(j)
    return keys


def _pairs_in_sorted_runs(order: np.ndarray, keys_sorted: np.ndarray, hashes: np.ndarray,
                          max_distance: int, big_run: int = 64) -> list[np.ndarray]:
    """Verified pairs among items sharing a key; `order` sorts the items by key."""
    n = len(order)
    out: list[np.ndarray] = []
    if n < 2:
        return out
    starts = np.flatnonzero(np.r_[True, keys_sorted[1:] != keys_sorted[:-1]])
    lengths = np.diff(np.r_[starts, n])
    longest = int(lengths.max())
    # runs up to `big_run` long: compare every item with the next d items of the same key, for all d
    for d in range(1, min(longest, big_run)):
        same = keys_sorted[d:] == keys_sorted[:-d]
        i = order[:-d][same]
        j = order[d:][same]
        if len(i):
            close = popcount(hashes[i] ^ hashes[j]) <= max_distance
            out.append(np.stack([i[close], j[close]], axis=1))
    # longer runs (many similar hashes): all pairs beyond the first big_run - 1 neighbours, blockwise
    for s, ln in zip(starts[lengths > big_run], lengths[lengths > big_run], strict=True):
        members = order[s:s + ln]
        for a in range(0, ln, 1024):
            block = members[a:a + 1024]
            dist = popcount((hashes[block][:, None] ^ hashes[members][None, :]).ravel()).reshape(len(block), ln)
            bi, mj = np.nonzero(dist <= max_distance)
            offset = (mj - (a + bi))
            keep = offset >= big_run          # nearer neighbours were compared above
            out.append(np.stack([block[bi[keep]], members[mj[keep]]], axis=1))
    return out


def near_duplicate_pairs(hashes: np.ndarray, max_distance: int, tables: int, bits: int,
                         seed: int = 0) -> np.ndarray:
    """[p, 2] index pairs (i < j) of hashes within `max_distance` found by LSH (each pair once)."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    found: list[np.ndarray] = []
    keys = _table_keys(hashes, lsh_positions(tables, bits, seed))
    for t in range(tables):
        order = np.argsort(keys[t], kind="stable")
        found += _pairs_in_sorted_runs(order, keys[t][order], hashes, max_distance)
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(found).astype(np.int64)
    pairs.sort(axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0)


def cluster_roots(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components of n nodes joined by `pairs`: root[i] = the smallest index in i's component."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    first = np.full(labels.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, labels, np.arange(n, dtype=np.int64))
    return first[labels]


def split_for(key: str, split_buckets: Sequence[tuple[str, int]]) -> str:
    """Deterministic split: sha256(key) into hash buckets (the key of a cluster's representative)."""
    total = sum(b for _, b in split_buckets)
    bucket = int(hashlib.sha256(key.encode()).hexdigest(), 16) % total
    for name, b in split_buckets:
        if bucket < b:
            return name
        bucket -= b
    raise AssertionError("unreachable")
