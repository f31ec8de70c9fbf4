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
import enum
import itertools
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from components.ingest import dedup
from components.ingest.listing import LABELS, ImageInput
from schemas.config import IngestConfig

if TYPE_CHECKING:
    from components.ingest.images import Decoded

STATUSES = ("written", "exact_duplicate", "near_duplicate", "quarantined", "skipped", "leaked_into_training")
WRITTEN, EXACT, NEAR, QUARANTINED, SKIPPED, LEAKED = range(len(STATUSES))    # a status as an index into STATUSES
HOLDOUT_PREFIX = "holdout_"


def num_shards_for(n_inputs: int) -> int:
    return max(1, min(256, n_inputs // 2000 + 1))


def holdout_split(name: str) -> str:
    return f"{HOLDOUT_PREFIX}{name}"


# ------------------------------------------------------------------------------------ the scan's rows
# One line of the scan's metadata per file: a JSON list, the row's tag ("ok" or "q") then its fields.
class ScanRow(NamedTuple):
    """A decoded file: its hashes, size, and where its encoded example was spilled."""
    path: str
    label: str
    source: str
    generator: str
    content: str
    sha256: str          # of the file's bytes (hex)
    pixel_sha: str       # of the decoded pixels (hex): exact duplicates
    phash: int           # 64-bit perceptual hash: near duplicates
    pixels: int          # width x height
    min_side: int
    spill: str           # the spill file holding the encoded example ...
    offset: int          # ... at this offset ...
    length: int          # ... this long
    thumb: str           # the colour thumbnail (hex)
    holdout: str = ""    # the held-out set it belongs to ("": the training input)

    @classmethod
    def of(cls, item: ImageInput, decoded: Decoded, sha256: str, spill: str, offset: int, length: int) -> ScanRow:
        """The row of an input decoded as `decoded`."""
        return cls(item.path, item.label, item.source, item.generator, item.content, sha256, decoded.pixel_sha,
                   int(decoded.phash), int(decoded.pixels), int(decoded.min_side), spill, int(offset), int(length),
                   decoded.thumb.hex(), item.holdout)


class QuarantineRow(NamedTuple):
    """A file that failed to decode (or to be read from its archive)."""
    path: str
    label: str
    source: str
    generator: str
    content: str
    reason: str
    detail: str = ""
    holdout: str = ""

    @classmethod
    def of(cls, item: ImageInput, reason: str, detail: str = "") -> QuarantineRow:
        """The row of an input quarantined for `reason`."""
        return cls(item.path, item.label, item.source, item.generator, item.content, reason, detail[:300],
                   item.holdout)


Row = ScanRow | QuarantineRow
_TAGS = {ScanRow: "ok", QuarantineRow: "q"}


def row_line(row: Row) -> str:
    """The row as a line of the scan's metadata."""
    return json.dumps([_TAGS[type(row)], *row]) + "\n"


def parse_row_line(line: str) -> Row:
    tag, *fields = json.loads(line)
    return (ScanRow if tag == "ok" else QuarantineRow)(*fields)


class ShardRef(NamedTuple):
    """One example of a shard's reading order: where it was spilled, and its cluster."""
    spill: str
    offset: int
    length: int
    cluster_id: str


class Kind(enum.IntEnum):
    """Where an input's member record comes from."""
    DECODED = 0        # a decoded file: row k of the columns
    UNDECODED = 1      # a file that failed to decode: QuarantineRow k
    LISTED = 2         # an input decided at listing time: rejected record k


# ------------------------------------------------------------------------------------ the plan's state
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

    def add(self, r: ScanRow) -> None:
        self.path.append(r.path)
        self.label.append(LABELS.index(r.label))
        key = (r.source, r.generator, r.content)
        self.meta.append(self._meta_index.setdefault(key, key))
        self.sha256.append(bytes.fromhex(r.sha256))
        self.pixel_sha.append(bytes.fromhex(r.pixel_sha))
        self.phash.append(r.phash)
        self.pixels.append(r.pixels)
        self.min_side.append(r.min_side)
        self.thumb.append(bytes.fromhex(r.thumb).ljust(3 * dedup.THUMB_SIDE ** 2, b"\0"))
        if r.spill not in self._spill_index:
            self._spill_index[r.spill] = len(self.spill_names)
            self.spill_names.append(r.spill)
        self.spill.append(self._spill_index[r.spill])
        self.offset.append(r.offset)
        self.length.append(r.length)
        self.holdout.append(r.holdout)

    def __len__(self) -> int:
        return len(self.path)

    def cluster_id(self, i: int) -> str:
        return self.pixel_sha[i].hex()[:16]

    def rank(self, i: int) -> tuple:
        """The order inside a cluster: the largest image first."""
        return (-self.pixels[i], self.path[i])

    def by_role(self, idx: list[int]) -> dict[str, list[int]]:
        """`idx` by held-out set ("": the training input)."""
        out: dict[str, list[int]] = defaultdict(list)
        for i in idx:
            out[self.holdout[i]].append(i)
        return out


class _Fates:
    """Each decoded file's fate, by column row."""

    def __init__(self, n: int):
        self.status = np.zeros(n, dtype=np.int8)                  # index into STATUSES
        self.reason: dict[int, tuple[str, str]] = {}               # row -> (reason, detail)
        self.cluster = [""] * n
        self.representative = np.zeros(n, dtype=bool)
        self.split = np.full(n, -1, dtype=np.int16)               # index into the split names (-1: none)

    def set(self, i: int, status: int, cid: str) -> None:
        self.status[i], self.cluster[i] = status, cid

    def write(self, i: int, cid: str) -> None:
        self.status[i], self.representative[i], self.cluster[i] = WRITTEN, True, cid

    def conflict(self, i: int, cid: str, detail: str) -> None:
        self.set(i, QUARANTINED, cid)
        self.reason[i] = ("label_conflict", detail)

    def leak(self, i: int, cid: str, how: str) -> None:
        self.set(i, LEAKED, cid)
        self.reason[i] = ("leaked_into_training", f"{how} of a training input (cluster {cid})")


@dataclasses.dataclass
class Plan:
    summary: dict
    shards: dict[tuple[str, int], list[ShardRef]]    # (split, shard) -> reading order
    num_shards: int
    _members: list[tuple[str, Kind, int]]            # (path, kind, index), sorted by path; lines made when written
    _quarantined: list[tuple[str, Kind, int]]        # the quarantined members, the same way
    _cols: _Columns
    _fates: _Fates
    _bad: list[QuarantineRow]
    _rejected: Sequence[dict]
    _split_names: list[str]

    def member_lines(self) -> Iterator[str]:
        for _, kind, k in self._members:
            m = self._fields(kind, k)
            del m["detail"]                         # the detail is in quarantine.jsonl
            yield _line(m)

    def quarantine_lines(self) -> Iterator[str]:
        for _, kind, k in self._quarantined:
            m = self._fields(kind, k)
            yield _line({key: m[key] for key in ("path", "label", "source", "reason", "detail")})

    def _fields(self, kind: Kind, k: int) -> dict:
        """The member record of input k of its kind."""
        if kind == Kind.DECODED:
            cols, fates = self._cols, self._fates
            source, generator, content = cols.meta[k]
            why, detail = fates.reason.get(k, ("", ""))
            split = self._split_names[fates.split[k]] if fates.split[k] >= 0 else ""
            return {"path": cols.path[k], "label": LABELS[cols.label[k]], "source": source, "generator": generator,
                    "content": content, "sha256": cols.sha256[k].hex(), "cluster_id": fates.cluster[k],
                    "representative": bool(fates.representative[k]), "status": STATUSES[fates.status[k]],
                    "reason": why, "detail": detail, "split": split, "holdout": cols.holdout[k]}
        # a QuarantineRow has the fields of a listing-time record (listing.rejected_record) but its status
        r = {**self._bad[k]._asdict(), "status": "quarantined"} if kind == Kind.UNDECODED else self._rejected[k]
        return {"path": r["path"], "label": r["label"], "source": r["source"], "generator": r.get("generator", ""),
                "content": r.get("content", ""), "sha256": "", "cluster_id": "", "representative": False,
                "status": r["status"], "reason": r["reason"], "detail": r.get("detail", ""), "split": "",
                "holdout": r.get("holdout", "")}


def _line(d: dict) -> str:
    return json.dumps(d, sort_keys=True) + "\n"


# ------------------------------------------------------------------------------------ the steps
def make_plan(rows: Iterable[Row], rejected: Sequence[dict], opts: IngestConfig,
              split_buckets: Sequence[tuple[str, int]], n_inputs: int, holdout_names: Sequence[str] = ()) -> Plan:
    """`rows`: the scan's; `rejected`: listing-time records (status skipped|quarantined);
    `holdout_names`: the held-out sets (rows name theirs in `holdout`, "" for training)."""
    cols, bad = _columns(rows)
    fates = _Fates(len(cols))
    if opts.dedup:
        reps, exact_of = _exact_clusters(cols, fates)
        _near_clusters(cols, fates, reps, exact_of, opts)
    else:
        for i in range(len(cols)):
            fates.write(i, cols.cluster_id(i))
    split_names = [name for name, _ in split_buckets] + [holdout_split(h) for h in holdout_names]
    num_shards = num_shards_for(n_inputs)
    shards = _assign_shards(cols, fates, split_buckets, split_names, holdout_names, num_shards)
    members, quarantined, tally = _account(cols, fates, bad, rejected, split_names, holdout_names)
    summary = _summary(tally, len(members), n_inputs, num_shards, opts, holdout_names)
    return Plan(summary, shards, num_shards, members, quarantined, cols, fates, bad, rejected, split_names)


def _columns(rows: Iterable[Row]) -> tuple[_Columns, list[QuarantineRow]]:
    """The decoded files' rows as columns; the rows of files that failed to decode."""
    cols = _Columns()
    bad: list[QuarantineRow] = []
    for r in rows:
        if isinstance(r, ScanRow):
            cols.add(r)
        else:
            bad.append(r)
    return cols, bad


def _exact_clusters(cols: _Columns, fates: _Fates) -> tuple[list[int], dict[int, list[int]]]:
    """Groups of equal pixels: held-out copies of a training input leak, label conflicts are
    quarantined. Returns the groups' representatives and, for those that have copies, the copies."""
    # groups by sorting, not a dict of lists (memory at 200k files)
    by_pixels = sorted(sorted(range(len(cols)), key=cols.path.__getitem__), key=cols.pixel_sha.__getitem__)
    reps: list[int] = []
    exact_of: dict[int, list[int]] = {}
    for _, grouped in itertools.groupby(by_pixels, key=cols.pixel_sha.__getitem__):
        group = sorted(grouped, key=cols.rank)
        if len(group) == 1 and not cols.holdout[group[0]]:
            reps.append(group[0])
            continue
        cid = cols.cluster_id(group[0])
        roles = cols.by_role(group)
        for role, part in sorted(roles.items()):
            if role and "" in roles:              # a held-out copy of a training input
                for i in part:
                    fates.leak(i, cid, "exact duplicate")
                continue
            if len(part) > 1 and len({cols.label[i] for i in part}) > 1:
                for i in part:
                    fates.conflict(i, cid, f"exact duplicate {cid}")
                continue
            reps.append(part[0])
            if len(part) > 1:
                exact_of[part[0]] = part[1:]
    return reps, exact_of


def _near_roots(cols: _Columns, reps: list[int], opts: IngestConfig) -> np.ndarray:
    """For each representative (sorted by pixel hash, then role), the root of its near-duplicate
    cluster: close pHashes (never degenerate ones) and close colours. Frees the thumbnails."""
    eligible = np.array([not dedup.is_degenerate(cols.phash[i], cols.min_side[i]) for i in reps], dtype=bool)
    elig_idx = np.flatnonzero(eligible)
    hashes = np.array([cols.phash[reps[k]] for k in elig_idx], dtype=np.uint64)
    pairs = dedup.near_duplicate_pairs(hashes, opts.near_duplicate_max_distance, opts.lsh_tables, opts.lsh_bits)
    pairs = elig_idx[pairs] if len(pairs) else np.zeros((0, 2), dtype=np.int64)
    thumbs = np.frombuffer(b"".join(cols.thumb[i] for i in reps), dtype=np.uint8)
    thumbs = thumbs.reshape(len(reps), 3 * dedup.THUMB_SIDE ** 2)
    pairs = dedup.color_close(thumbs, pairs, opts.near_duplicate_max_color_diff)
    cols.thumb.clear()                                   # no longer needed
    return dedup.cluster_roots(len(reps), pairs)


def _near_clusters(cols: _Columns, fates: _Fates, reps: list[int], exact_of: dict[int, list[int]],
                   opts: IngestConfig) -> None:
    """Near duplicates among the exact representatives (every role at once): the largest of a
    cluster is written, the others are near duplicates; held-out near duplicates of a training input
    leak; label conflicts are quarantined. The exact copies follow their representative."""
    reps.sort(key=lambda i: (cols.pixel_sha[i], cols.holdout[i]))   # root = smallest pixel hash
    roots = _near_roots(cols, reps, opts)
    sizes = np.bincount(roots, minlength=len(reps))
    clusters: dict[int, list[int]] = defaultdict(list)
    for k, i in enumerate(reps):
        if sizes[roots[k]] == 1 and not cols.holdout[i]:   # alone in its cluster: written
            cid = cols.cluster_id(i)
            fates.write(i, cid)
            for d in exact_of.get(i, ()):
                fates.set(d, EXACT, cid)
            continue
        clusters[int(roots[k])].append(i)
    for root_k, members in clusters.items():
        cid = cols.cluster_id(reps[root_k])
        roles = cols.by_role(members)
        for role, part in sorted(roles.items()):
            part.sort(key=cols.rank)
            if role and "" in roles:          # near duplicates of a training input
                for i in part:
                    fates.leak(i, cid, "near duplicate")
                    for d in exact_of.get(i, ()):
                        fates.leak(d, cid, "near duplicate")
                continue
            conflict = len({cols.label[i] for i in part}) > 1
            for pos, i in enumerate(part):
                fates.cluster[i] = cid
                for d in exact_of.get(i, ()):
                    fates.set(d, EXACT, cid)
                if conflict:
                    fates.conflict(i, cid, f"near-duplicate cluster {cid}")
                elif pos == 0:
                    fates.write(i, cid)
                else:
                    fates.status[i] = NEAR


def _assign_shards(cols: _Columns, fates: _Fates, split_buckets: Sequence[tuple[str, int]], split_names: list[str],
                   holdout_names: Sequence[str], num_shards: int) -> dict[tuple[str, int], list[ShardRef]]:
    """Each representative's split (recorded in `fates.split`) and shard; each shard's reading
    order (by cluster, then path)."""
    split_index = {name: k for k, name in enumerate(split_names)}
    shards: dict[tuple[str, int], list[tuple[str, str, str, int, int]]] = defaultdict(list)
    for i in np.flatnonzero(fates.representative).tolist():
        # The split follows the representative's file bytes, not the cluster id (which comes from
        # decoded pixels, and those differ between raw mode's draft decoding and neutralisation).
        # Held-out inputs go to their own split, never to train or eval.
        role = cols.holdout[i]
        split = holdout_split(role) if role else dedup.split_for(cols.sha256[i].hex(), split_buckets)
        fates.split[i] = split_index[split]
        cid = fates.cluster[i]
        shards[(split, int(cid, 16) % num_shards)].append(
            (cid, cols.path[i], cols.spill_names[cols.spill[i]], cols.offset[i], cols.length[i]))
    ordered: dict[tuple[str, int], list[ShardRef]] = {}
    for key in list(shards):
        ordered[key] = [ShardRef(sp, off, ln, cid) for cid, _, sp, off, ln in sorted(shards.pop(key))]
    # A held-out set left empty (every image leaked into training, or a leave-out value no input has)
    # still gets one empty shard: the Evaluator and Transform read every split they are given.
    for h in holdout_names:
        if not any(split == holdout_split(h) for split, _ in ordered):
            ordered[(holdout_split(h), 0)] = []
    return ordered


@dataclasses.dataclass
class _Tally:
    """What the summary counts."""
    counts: dict[str, int]                       # status -> inputs
    quarantine_reasons: dict[str, int]
    skip_reasons: dict[str, int]
    by_split: dict[str, dict[str, int]]          # split -> label -> written
    per_set: dict[str, dict[str, int]]           # held-out set -> "inputs" | status -> inputs

    def add(self, status: str, why: str, holdout: str) -> None:
        self.counts[status] += 1
        if holdout in self.per_set:
            self.per_set[holdout]["inputs"] += 1
            self.per_set[holdout][status] += 1
        if status == "quarantined":
            self.quarantine_reasons[why] += 1
        elif status == "skipped":
            self.skip_reasons[why] += 1


def _account(cols: _Columns, fates: _Fates, bad: list[QuarantineRow], rejected: Sequence[dict],
             split_names: list[str], holdout_names: Sequence[str]
             ) -> tuple[list[tuple[str, Kind, int]], list[tuple[str, Kind, int]], _Tally]:
    """Every input once: the members and the quarantined members, sorted by path, as (path, kind,
    index) only (their JSON lines are made as they are written: at 200k files the lines would be the
    plan's largest object); and the tally."""
    members: list[tuple[str, Kind, int]] = []
    quarantined: list[tuple[str, Kind, int]] = []
    tally = _Tally(dict.fromkeys(STATUSES, 0), defaultdict(int), defaultdict(int),
                   {s: dict.fromkeys(LABELS, 0) for s in split_names},
                   {h: dict.fromkeys(("inputs",) + STATUSES, 0) for h in holdout_names})

    def record(path: str, kind: Kind, k: int, status: str, why: str, holdout: str) -> None:
        members.append((path, kind, k))
        if status == "quarantined":
            quarantined.append((path, kind, k))
        tally.add(status, why, holdout)

    for i in range(len(cols)):
        status = STATUSES[fates.status[i]]
        record(cols.path[i], Kind.DECODED, i, status, fates.reason.get(i, ("", ""))[0], cols.holdout[i])
        if status == "written":
            tally.by_split[split_names[fates.split[i]]][LABELS[cols.label[i]]] += 1
    for k, q in enumerate(bad):
        record(q.path, Kind.UNDECODED, k, "quarantined", q.reason, q.holdout)
    for k, r in enumerate(rejected):
        record(r["path"], Kind.LISTED, k, r["status"], r["reason"], r.get("holdout", ""))
    members.sort()
    quarantined.sort()
    return members, quarantined, tally


def _summary(tally: _Tally, inputs: int, n_inputs: int, num_shards: int, opts: IngestConfig,
             holdout_names: Sequence[str]) -> dict:
    by_split, counts = tally.by_split, tally.counts
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
        "quarantine_reasons": dict(sorted(tally.quarantine_reasons.items())),
        "skip_reasons": dict(sorted(tally.skip_reasons.items())),
        "written_by_split": by_split,
        "written_by_label": written_by_label,
        "num_shards": num_shards,
        "warnings": warnings,
        "accounted_for": inputs == n_inputs == sum(counts.values()),
        "options": opts.model_dump(mode="json", exclude={"workers"}),
    }
    if holdout_names:
        summary["holdout_sets"] = {h: {"split": holdout_split(h), **tally.per_set[h]} for h in holdout_names}
    return summary
