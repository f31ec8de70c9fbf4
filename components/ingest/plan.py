"""Pass (b) of ingestion: decide every input's fate from metadata alone (no image bytes).

Input: one metadata row per decoded file (hashes, size, where its encoded example was spilled), the
quarantine rows of files that failed to decode, and the inputs decided at listing time. Output:
each input's member record (written | exact_duplicate | near_duplicate | quarantined | skipped |
leaked_into_training),
the quarantine records, the summary, and for every (split, shard) the ordered list of spilled
examples the shard writer copies. Deterministic: the result depends only on the rows' contents, not
on their order or on how the scan was split into bundles.

Held-out sets (evaluation.holdout_sets, evaluation.leave_out) are deduplicated together with the
training input: a held-out input in the same exact or near-duplicate cluster as any training input
is dropped as `leaked_into_training` (the held-out figure must not be inflated by leakage); the
other held-out representatives go to the split `holdout_<name>`, never to train or eval.

Memory is a few hundred bytes per input, held in columns (numpy arrays and lists of strings).
"""
from __future__ import annotations

import dataclasses
import itertools
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from components.ingest import dedup

STATUSES = ("written", "exact_duplicate", "near_duplicate", "quarantined", "skipped", "leaked_into_training")
# their indices (a plan's status column)
WRITTEN, EXACT, NEAR, QUAR, LEAKED = (STATUSES.index(x) for x in (
    "written", "exact_duplicate", "near_duplicate", "quarantined", "leaked_into_training"))
HOLDOUT_PREFIX = "holdout_"
LABELS = ("real", "synthesized")


def num_shards_for(n_inputs: int) -> int:
    return max(1, min(256, n_inputs // 2000 + 1))


# one row of the scan's metadata (JSON list); "ok" rows and "q" (quarantined while decoding) rows
OK_FIELDS = ("path", "label", "source", "generator", "content", "sha256", "pixel_sha", "phash", "pixels",
             "min_side", "spill", "offset", "length", "thumb", "holdout")
Q_FIELDS = ("path", "label", "source", "generator", "content", "reason", "detail", "holdout")


def holdout_split(name: str) -> str:
    return f"{HOLDOUT_PREFIX}{name}"


def ok_row(path, label, source, generator, content, sha256, pixel_sha, phash, pixels, min_side, spill, offset,
           length, thumb: bytes = b"", holdout="") -> list:
    return ["ok", path, label, source, generator, content, sha256, pixel_sha, int(phash), int(pixels),
            int(min_side), spill, int(offset), int(length), thumb.hex(), holdout]


def q_row(path, label, source, generator, content, reason, detail="", holdout="") -> list:
    return ["q", path, label, source, generator, content, reason, detail[:300], holdout]


class _Columns:
    """The decoded files, column-wise (compact at 200k files)."""

    def __init__(self):
        self.path: list[str] = []
        self.label: list[int] = []
        self.meta: list[tuple[str, str, str]] = []      # (source, generator, content), interned
        self.sha256: list[bytes] = []
        self.pixel_sha: list[bytes] = []
        self.phash: list[int] = []
        self.pixels: list[int] = []
        self.min_side: list[int] = []
        self.thumb: list[bytes] = []
        self.spill: list[int] = []
        self.offset: list[int] = []
        self.length: list[int] = []
        self.holdout: list[str] = []
        self.spill_names: list[str] = []
        self._spill_index: dict[str, int] = {}
        self._meta_index: dict[tuple, tuple] = {}

    def add(self, r: list) -> None:
        _, path, label, source, generator, content, sha256, pixel_sha, phash, pixels, min_side, spill, off, ln, \
            thumb, holdout = r
        self.path.append(path)
        self.label.append(LABELS.index(label))
        key = (source, generator, content)
        self.meta.append(self._meta_index.setdefault(key, key))
        self.sha256.append(bytes.fromhex(sha256))
        self.pixel_sha.append(bytes.fromhex(pixel_sha))
        self.phash.append(phash)
        self.pixels.append(pixels)
        self.min_side.append(min_side)
        self.thumb.append(bytes.fromhex(thumb).ljust(3 * dedup.THUMB_SIDE ** 2, b"\0"))
        if spill not in self._spill_index:
            self._spill_index[spill] = len(self.spill_names)
            self.spill_names.append(spill)
        self.spill.append(self._spill_index[spill])
        self.offset.append(off)
        self.length.append(ln)
        self.holdout.append(holdout)

    def __len__(self) -> int:
        return len(self.path)


@dataclasses.dataclass
class Plan:
    summary: dict
    shards: dict[tuple[str, int], list[tuple[str, int, int, str]]]   # (split, shard) -> [(spill, off, len, cluster)]
    num_shards: int
    _members: list[tuple[str, int, int]]            # (path, kind, index), sorted by path; lines made when written
    _fields: Callable[[int, int], dict]              # (kind, index) -> the member's fields
    _quarantined: list[tuple[str, int, int]]         # the quarantined members, the same way

    def member_lines(self) -> Iterator[str]:
        for _, kind, k in self._members:
            m = self._fields(kind, k)
            del m["detail"]                         # the detail is in quarantine.jsonl
            yield _line(m)

    def quarantine_lines(self) -> Iterator[str]:
        for _, kind, k in self._quarantined:
            m = self._fields(kind, k)
            yield _line({key: m[key] for key in ("path", "label", "source", "reason", "detail")})


def _line(d: dict) -> str:
    return json.dumps(d, sort_keys=True) + "\n"


def make_plan(rows: Iterable[list], rejected: Sequence[dict], opts, split_buckets: Sequence[tuple[str, int]],
              n_inputs: int, holdout_names: Sequence[str] = ()) -> Plan:
    """`opts`: IngestOptions; `rejected`: listing-time records (status skipped|quarantined);
    `holdout_names`: the held-out sets (rows name theirs in their last field, "" for training)."""
    cols = _Columns()
    bad: list[list] = []
    for r in rows:
        (cols.add if r[0] == "ok" else bad.append)(r)
    n = len(cols)
    order = sorted(range(n), key=cols.path.__getitem__)           # deterministic: rows sorted by path
    status = np.zeros(n, dtype=np.int8)                           # index into STATUSES
    reason: dict[int, tuple[str, str]] = {}                       # row -> (reason, detail)
    cluster = [""] * n
    rep_flag = np.zeros(n, dtype=bool)
    split_names = [name for name, _ in split_buckets] + [holdout_split(h) for h in holdout_names]

    def rank(i: int) -> tuple:
        return (-cols.pixels[i], cols.path[i])

    def by_role(idx: list[int]) -> dict[str, list[int]]:
        out: dict[str, list[int]] = defaultdict(list)
        for i in idx:
            out[cols.holdout[i]].append(i)
        return out

    def leak(i: int, cid: str, how: str) -> None:
        status[i], cluster[i] = LEAKED, cid
        reason[i] = ("leaked_into_training", f"{how} of a training input (cluster {cid})")

    if opts.dedup:
        # groups of equal pixels by sorting, not a dict of lists (memory at 200k files); exact_of
        # holds only representatives that have copies
        by_pixels = sorted(order, key=cols.pixel_sha.__getitem__)
        reps: list[int] = []
        exact_of: dict[int, list[int]] = {}
        for _, grouped in itertools.groupby(by_pixels, key=cols.pixel_sha.__getitem__):
            group = sorted(grouped, key=rank)
            if len(group) == 1 and not cols.holdout[group[0]]:
                reps.append(group[0])
                continue
            cid = cols.pixel_sha[group[0]].hex()[:16]
            roles = by_role(group)
            for role, part in sorted(roles.items()):
                if role and "" in roles:              # a held-out copy of a training input
                    for i in part:
                        leak(i, cid, "exact duplicate")
                    continue
                if len(part) > 1 and len({cols.label[i] for i in part}) > 1:
                    for i in part:
                        status[i], cluster[i] = QUAR, cid
                        reason[i] = ("label_conflict", f"exact duplicate {cid}")
                    continue
                reps.append(part[0])
                if len(part) > 1:
                    exact_of[part[0]] = part[1:]
        del by_pixels
        # near duplicates among the exact representatives (every role at once), on their pHashes
        reps.sort(key=lambda i: (cols.pixel_sha[i], cols.holdout[i]))   # root = smallest pixel hash
        eligible = np.array([not dedup.is_degenerate(cols.phash[i], cols.min_side[i]) for i in reps], dtype=bool)
        elig_idx = np.flatnonzero(eligible)
        hashes = np.array([cols.phash[reps[k]] for k in elig_idx], dtype=np.uint64)
        pairs = dedup.near_duplicate_pairs(hashes, opts.near_duplicate_max_distance, opts.lsh_tables, opts.lsh_bits)
        pairs = elig_idx[pairs] if len(pairs) else np.zeros((0, 2), dtype=np.int64)
        thumbs = np.frombuffer(b"".join(cols.thumb[i] for i in reps),
                               dtype=np.uint8).reshape(len(reps), 3 * dedup.THUMB_SIDE ** 2)
        pairs = dedup.color_close(thumbs, pairs, opts.near_duplicate_max_color_diff)
        cols.thumb.clear()                                   # no longer needed
        del thumbs
        roots = dedup.cluster_roots(len(reps), pairs)
        sizes = np.bincount(roots, minlength=len(reps))
        clusters: dict[int, list[int]] = defaultdict(list)
        for k, i in enumerate(reps):
            if sizes[roots[k]] == 1 and not cols.holdout[i]:   # alone in its cluster: written
                cid = cols.pixel_sha[i].hex()[:16]
                cluster[i], status[i], rep_flag[i] = cid, WRITTEN, True
                for d in exact_of.get(i, ()):
                    status[d], cluster[d] = EXACT, cid
                continue
            clusters[int(roots[k])].append(i)
        for root_k, cluster_members in clusters.items():
            cid = cols.pixel_sha[reps[root_k]].hex()[:16]
            roles = by_role(cluster_members)
            for role, part in sorted(roles.items()):
                part.sort(key=rank)
                if role and "" in roles:          # near duplicates of a training input
                    for i in part:
                        leak(i, cid, "near duplicate")
                        for d in exact_of.get(i, ()):
                            leak(d, cid, "near duplicate")
                    continue
                conflict = len({cols.label[i] for i in part}) > 1
                for pos, i in enumerate(part):
                    cluster[i] = cid
                    for d in exact_of.get(i, ()):
                        status[d], cluster[d] = EXACT, cid
                    if conflict:
                        status[i] = QUAR
                        reason[i] = ("label_conflict", f"near-duplicate cluster {cid}")
                    elif pos == 0:
                        status[i], rep_flag[i] = WRITTEN, True
                    else:
                        status[i] = NEAR
    else:
        for i in order:
            status[i], rep_flag[i], cluster[i] = WRITTEN, True, cols.pixel_sha[i].hex()[:16]

    num_shards = num_shards_for(n_inputs)
    split_index = {name: k for k, name in enumerate(split_names)}
    split_no = np.full(n, -1, dtype=np.int16)                     # row -> index into split_names (-1: none)
    # (split, shard) -> [(cluster, path, spill, offset, length)]
    shards: dict[tuple[str, int], list[tuple[str, str, str, int, int]]] = defaultdict(list)
    for i in np.flatnonzero(rep_flag).tolist():
        # The split follows the representative's file bytes, not the cluster id (which comes from
        # decoded pixels, and those differ between raw mode's draft decoding and neutralisation).
        # Held-out inputs go to their own split, never to train or eval.
        role = cols.holdout[i]
        split = holdout_split(role) if role else dedup.split_for(cols.sha256[i].hex(), split_buckets)
        split_no[i] = split_index[split]
        shards[(split, int(cluster[i], 16) % num_shards)].append(
            (cluster[i], cols.path[i], cols.spill_names[cols.spill[i]], cols.offset[i], cols.length[i]))
    ordered: dict[tuple[str, int], list[tuple[str, int, int, str]]] = {}
    for key in list(shards):
        ordered[key] = [(sp, off, ln, cid) for cid, _, sp, off, ln in sorted(shards.pop(key))]
    # A held-out set left empty (every image leaked into training, or a leave-out value no input has)
    # still gets one empty shard: the Evaluator and Transform read every split they are given.
    for h in holdout_names:
        if not any(split == holdout_split(h) for split, _ in ordered):
            ordered[(holdout_split(h), 0)] = []

    def split_of(i: int) -> str:
        return split_names[split_no[i]] if split_no[i] >= 0 else ""

    # members, sorted by path: (path, kind, index) only; their JSON lines are made as they are
    # written (at 200k files the lines would be the plan's largest object)
    members: list[tuple[str, int, int]] = []
    quarantined: list[tuple[str, int, int]] = []
    counts = dict.fromkeys(STATUSES, 0)
    q_reasons: dict[str, int] = defaultdict(int)
    s_reasons: dict[str, int] = defaultdict(int)
    by_split = {s: dict.fromkeys(LABELS, 0) for s in split_names}
    per_set = {h: dict.fromkeys(("inputs",) + STATUSES, 0) for h in holdout_names}

    def fields(kind: int, k: int) -> dict:
        """Member k of a kind: 0 a decoded file (a column row), 1 a file that failed to decode,
        2 an input decided at listing time."""
        if kind == 0:
            source, generator, content = cols.meta[k]
            why, detail = reason.get(k, ("", ""))
            return {"path": cols.path[k], "label": LABELS[cols.label[k]], "source": source, "generator": generator,
                    "content": content, "sha256": cols.sha256[k].hex(), "cluster_id": cluster[k],
                    "representative": bool(rep_flag[k]), "status": STATUSES[status[k]], "reason": why,
                    "detail": detail, "split": split_of(k), "holdout": cols.holdout[k]}
        if kind == 1:
            path, label, source, generator, content, why, detail, holdout = bad[k][1:]
            st = "quarantined"
        else:
            r = rejected[k]
            path, label, source, generator, content, st, why, detail, holdout = (
                r["path"], r["label"], r["source"], r.get("generator", ""), r.get("content", ""), r["status"],
                r["reason"], r.get("detail", ""), r.get("holdout", ""))
        return {"path": path, "label": label, "source": source, "generator": generator, "content": content,
                "sha256": "", "cluster_id": "", "representative": False, "status": st, "reason": why,
                "detail": detail, "split": "", "holdout": holdout}

    def record(path: str, kind: int, k: int, st: str, why: str, holdout: str) -> None:
        members.append((path, kind, k))
        if st == "quarantined":
            quarantined.append((path, kind, k))
        counts[st] += 1
        if holdout in per_set:
            per_set[holdout]["inputs"] += 1
            per_set[holdout][st] += 1
        if st == "quarantined":
            q_reasons[why] += 1
        elif st == "skipped":
            s_reasons[why] += 1

    for i in range(n):
        st = STATUSES[status[i]]
        record(cols.path[i], 0, i, st, reason.get(i, ("", ""))[0], cols.holdout[i])
        if st == "written":
            by_split[split_of(i)][LABELS[cols.label[i]]] += 1
    for k, r in enumerate(bad):
        record(r[1], 1, k, "quarantined", r[6], r[8])
    for k, rej in enumerate(rejected):
        record(rej["path"], 2, k, rej["status"], rej["reason"], rej.get("holdout", ""))
    members.sort()
    quarantined.sort()
    inputs = len(members)
    written_by_label = {lab: sum(v[lab] for s, v in by_split.items() if not s.startswith(HOLDOUT_PREFIX))
                        for lab in LABELS}
    warnings = [f"split {s!r} is empty" for s, v in by_split.items() if not sum(v.values())]
    warnings += [f"no {lab} images were written" for lab, c in written_by_label.items() if not c]
    warnings += [f"split {s!r} has no {lab} images" for s, v in by_split.items() if sum(v.values())
                 for lab in LABELS if not v[lab]]
    summary = {
        "inputs": inputs,
        "written": counts["written"],
        "exact_duplicates": counts["exact_duplicate"],
        "near_duplicates": counts["near_duplicate"],
        "quarantined": counts["quarantined"],
        "skipped": counts["skipped"],
        "leaked_into_training": counts["leaked_into_training"],
        "quarantine_reasons": dict(sorted(q_reasons.items())),
        "skip_reasons": dict(sorted(s_reasons.items())),
        "written_by_split": by_split,
        "written_by_label": written_by_label,
        "num_shards": num_shards,
        "warnings": warnings,
        "accounted_for": inputs == n_inputs == sum(counts.values()),
        "options": opts.model_dump(mode="json", exclude={"workers"}),
    }
    if holdout_names:
        summary["holdout_sets"] = {h: {"split": holdout_split(h), **{k: v for k, v in per_set[h].items()}}
                                   for h in holdout_names}
    return Plan(summary, ordered, num_shards, members, fields, quarantined)
