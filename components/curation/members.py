"""What ingestion did with every input file of a run, read from the ExampleGen output artifact.

Ingestion writes next to its `Split-*/` TFRecords:
  ingest_summary.json  counts (inputs == written + exact_duplicates + near_duplicates + quarantined)
  quarantine.jsonl     {path, label, source, reason, detail} per quarantined file
  members.jsonl        one line per input file: {path, label, source, generator, content, sha256,
                       cluster_id, representative, status, reason, split}
Runs made before `members.jsonl` existed are reconstructed from the TFRecords and the quarantine
file (no duplicate detection then: every written file is its own cluster's representative).
"""
from __future__ import annotations

import glob
import json
import os
from typing import Iterator

MEMBERS_FILE = "members.jsonl"
QUARANTINE_FILE = "quarantine.jsonl"
SUMMARY_FILE = "ingest_summary.json"
STATUSES = ("written", "exact_duplicate", "near_duplicate", "quarantined")
# Summary key counting each status.
SUMMARY_KEYS = {"written": "written", "exact_duplicate": "exact_duplicates",
                "near_duplicate": "near_duplicates", "quarantined": "quarantined"}
# TFRecord features copied onto samples (metadata; the image bytes are read separately).
_STR_FEATURES = ("label", "source", "generator", "content", "path", "sha256", "orig_format", "orig_mode",
                 "codec", "cluster_id")
_INT_FEATURES = ("orig_width", "orig_height")


class CurationError(Exception):
    """A user-facing problem (missing run outputs, inconsistent accounting); one-line message."""


def _read_jsonl(path: str) -> list[dict]:
    import tensorflow as tf
    if not tf.io.gfile.exists(path):
        return []
    out = []
    with tf.io.gfile.GFile(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    raise CurationError(f"{path}: line {n} is not valid JSON") from None
    return out


def read_summary(examples_uri: str) -> dict:
    import tensorflow as tf
    path = os.path.join(examples_uri, SUMMARY_FILE)
    if not tf.io.gfile.exists(path):
        raise CurationError(f"no {SUMMARY_FILE} in {examples_uri} (not an ImageExampleGen output?)")
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _feature(ex, name: str):
    f = ex.features.feature.get(name)
    if f is None:
        return None
    if f.bytes_list.value:
        return f.bytes_list.value[0]
    if f.int64_list.value:
        return int(f.int64_list.value[0])
    if f.float_list.value:
        return float(f.float_list.value[0])
    return None


def iter_written(examples_uri: str, with_image: bool = False) -> Iterator[dict]:
    """One dict per TFRecord example: split, metadata features and (optionally) `image_raw`."""
    import tensorflow as tf
    files = sorted(glob.glob(os.path.join(examples_uri, "Split-*", "*.gz"))) if "://" not in examples_uri else \
        sorted(tf.io.gfile.glob(os.path.join(examples_uri, "Split-*", "*.gz")))
    for file in files:
        split = os.path.basename(os.path.dirname(file)).removeprefix("Split-")
        for record in tf.data.TFRecordDataset(file, compression_type="GZIP"):
            ex = tf.train.Example.FromString(record.numpy())
            row = {"split": split}
            for name in _STR_FEATURES:
                v = _feature(ex, name)
                row[name] = v.decode() if isinstance(v, bytes) else v
            for name in _INT_FEATURES:
                row[name] = _feature(ex, name)
            if with_image:
                row["image_raw"] = _feature(ex, "image_raw")
            yield row


def load_members(examples_uri: str) -> tuple[list[dict], dict]:
    """(one record per input file, ingest summary). Every record has the members.jsonl keys plus
    `detail` (quarantine detail) and the original-image metadata of written files."""
    summary = read_summary(examples_uri)
    written = {r["path"]: r for r in iter_written(examples_uri)}
    quarantine = {r["path"]: r for r in _read_jsonl(os.path.join(examples_uri, QUARANTINE_FILE))}
    members = _read_jsonl(os.path.join(examples_uri, MEMBERS_FILE))
    if not members:  # runs from before members.jsonl: written + quarantined files only
        members = [{**{k: r.get(k) for k in ("path", "label", "source", "generator", "content", "sha256")},
                    "cluster_id": r.get("cluster_id") or r.get("sha256") or r["path"], "representative": True,
                    "status": "written", "reason": "", "split": r["split"]} for r in written.values()]
        members += [{"path": q["path"], "label": q.get("label", ""), "source": q.get("source", "unknown"),
                     "generator": q.get("generator", ""), "content": q.get("content", "unknown"),
                     "sha256": q.get("sha256", ""), "cluster_id": "", "representative": False,
                     "status": "quarantined", "reason": q.get("reason", ""), "split": ""}
                    for q in quarantine.values()]
    out = []
    for m in members:
        m = dict(m)
        if m.get("status") not in STATUSES:
            raise CurationError(f"{MEMBERS_FILE}: {m.get('path')!r} has unknown status {m.get('status')!r}")
        rec = written.get(m["path"]) if m["status"] == "written" else None
        for k in ("orig_format", "orig_mode", "codec", "orig_width", "orig_height"):
            m.setdefault(k, rec.get(k) if rec else None)
        if rec and not m.get("split"):
            m["split"] = rec["split"]
        q = quarantine.get(m["path"]) if m["status"] == "quarantined" else None
        m.setdefault("detail", (q or {}).get("detail", ""))
        if q and not m.get("reason"):
            m["reason"] = q.get("reason", "")
        out.append(m)
    check_accounting(out, summary, n_records=len(written))
    return out, summary


def check_accounting(members: list[dict], summary: dict, n_records: int | None = None) -> None:
    """Members agree with the summary: one per input, status counts equal the summary's counts."""
    counts = {s: sum(1 for m in members if m["status"] == s) for s in STATUSES}
    problems = []
    if len(members) != summary.get("inputs"):
        problems.append(f"{len(members)} members but {summary.get('inputs')} inputs")
    for status, key in SUMMARY_KEYS.items():
        if counts[status] != summary.get(key, 0):
            problems.append(f"{counts[status]} {status} members but {key}={summary.get(key, 0)}")
    if n_records is not None and n_records != counts["written"]:
        problems.append(f"{n_records} TFRecord examples but {counts['written']} written members")
    if len({m["path"] for m in members}) != len(members):
        problems.append("duplicate paths in members")
    if problems:
        raise CurationError("ingestion outputs disagree: " + "; ".join(problems))


def local_media(path: str, cache_dir: str) -> str:
    """A local file the App can show: the path itself, or a cached copy of a gs:// object (kept under
    cache_dir by a hash of its URI; an unreadable object yields the would-be cache path)."""
    if "://" not in path:
        return os.path.abspath(path)
    import hashlib

    import tensorflow as tf
    ext = os.path.splitext(path)[1].lower()[:8]
    local = os.path.join(cache_dir, hashlib.sha256(path.encode()).hexdigest()[:32] + ext)
    if not os.path.exists(local):
        os.makedirs(cache_dir, exist_ok=True)
        try:
            tf.io.gfile.copy(path, local + ".part", overwrite=True)
            os.replace(local + ".part", local)
        except Exception:  # noqa: BLE001 - quarantined/unreadable objects stay visible as broken media
            pass
    return local
