"""What ingestion did with every input file of a run, read from the ExampleGen output artifact.

The files are ingestion's (`components/ingest/outputs.py` names and reads them): the summary
(counts), `members.jsonl` (one line per input file: path, label, source, generator, content, sha256,
cluster_id, representative, status, reason, split), `quarantine.jsonl` and the TFRecord shards.
Runs made before `members.jsonl` existed are reconstructed from the TFRecords and the quarantine
file (no duplicate detection then: every written file is its own cluster's representative).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from components.cache import cache_dir, key
from components.ingest import outputs
from components.ingest.outputs import MEMBERS_FILE, QUARANTINE_FILE, SUMMARY_FILE
from components.scoring.examples import iter_examples
from components.transform.preprocessing import IMAGE_KEY

STATUSES = ("written", "exact_duplicate", "near_duplicate", "quarantined", "leaked_into_training")
# Summary key counting each status (leaked_into_training: held-out duplicates of training images).
SUMMARY_KEYS = {"written": "written", "exact_duplicate": "exact_duplicates",
                "near_duplicate": "near_duplicates", "quarantined": "quarantined",
                "leaked_into_training": "leaked_into_training"}
# TFRecord features copied onto samples (metadata; the image bytes are read separately).
_FEATURES = ("label", "source", "generator", "content", "path", "sha256", "orig_format", "orig_mode",
             "codec", "cluster_id", "orig_width", "orig_height")


class CurationError(Exception):
    """A user-facing problem (missing run outputs, inconsistent accounting); one-line message."""


def default_cache_dir() -> str:
    """Where gs:// inputs are copied for the App."""
    return str(cache_dir("media"))


def _read(examples_uri: str, name: str, reader: Callable[[str], object]):
    try:
        return reader(examples_uri)
    except ValueError as e:  # json.JSONDecodeError
        raise CurationError(f"{name} in {examples_uri} is not valid JSON ({e})") from None


def read_summary(examples_uri: str) -> dict:
    if not outputs.has_file(examples_uri, SUMMARY_FILE):
        raise CurationError(f"no {SUMMARY_FILE} in {examples_uri} (not an ImageExampleGen output?)")
    return _read(examples_uri, SUMMARY_FILE, outputs.read_summary)


def _read_lines(examples_uri: str, name: str, reader: Callable[[str], list[dict]]) -> list[dict]:
    return _read(examples_uri, name, reader) if outputs.has_file(examples_uri, name) else []


def iter_written(examples_uri: str, with_image: bool = False) -> Iterator[dict]:
    """One dict per TFRecord example: split, metadata features and (optionally) `image_raw`."""
    for ex in iter_examples(examples_uri, with_image=with_image):
        row = {"split": ex["split"], **{name: ex.get(name) for name in _FEATURES}}
        if with_image:
            row["image_raw"] = ex.get(IMAGE_KEY)
        yield row


def load_members(examples_uri: str) -> tuple[list[dict], dict]:
    """(one record per input file, ingest summary). Every record has the members.jsonl keys plus
    `detail` (quarantine detail) and the original-image metadata of written files."""
    summary = read_summary(examples_uri)
    written = {r["path"]: r for r in iter_written(examples_uri)}
    quarantine = {r["path"]: r for r in _read_lines(examples_uri, QUARANTINE_FILE, outputs.read_quarantine)}
    members = _read_lines(examples_uri, MEMBERS_FILE, outputs.read_members)
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
    for status, summary_key in SUMMARY_KEYS.items():
        if counts[status] != summary.get(summary_key, 0):
            problems.append(f"{counts[status]} {status} members but {summary_key}={summary.get(summary_key, 0)}")
    if n_records is not None and n_records != counts["written"]:
        problems.append(f"{n_records} TFRecord examples but {counts['written']} written members")
    if len({m["path"] for m in members}) != len(members):
        problems.append("duplicate paths in members")
    if problems:
        raise CurationError("ingestion outputs disagree: " + "; ".join(problems))


def local_media(path: str, cache_dir: str | None = None) -> str:
    """A local file the App can show: the path itself, or a cached copy of a gs:// object (kept under
    the cache's media/ by a hash of its URI; an unreadable object yields the would-be cache path)."""
    from components.ingest.listing import member_input
    member = member_input(path) if ("://" in path or not os.path.exists(path)) else None
    if member is not None:   # a member of an archive: its bytes copied out once (never the archive)
        return _member_media(member, str(cache_dir or default_cache_dir()))
    if "://" not in path:
        return os.path.abspath(path)
    import tensorflow as tf
    cache_dir = str(cache_dir or default_cache_dir())
    ext = os.path.splitext(path)[1].lower()[:8]
    local = os.path.join(cache_dir, key(path, 32) + ext)
    if not os.path.exists(local):
        os.makedirs(cache_dir, exist_ok=True)
        try:
            tf.io.gfile.copy(path, local + ".part", overwrite=True)
            os.replace(local + ".part", local)
        except Exception:  # noqa: BLE001 - quarantined/unreadable objects stay visible as broken media
            pass
    return local


def _member_media(item, cache_dir: str) -> str:
    """The cache copy of an archive member (named by a hash of its path and the archive's version,
    so a replaced archive is copied again); an unreadable member yields the would-be path."""
    from components.ingest.images import ReadRefused, read_input
    ext = os.path.splitext(item.path)[1].lower()[:8]
    local = os.path.join(cache_dir, key(f"{item.path}\t{item.version}", 32) + ext)
    if not os.path.exists(local):
        os.makedirs(cache_dir, exist_ok=True)
        try:
            data = read_input(item, 2 ** 31)
        except ReadRefused:
            return local
        with open(local + ".part", "wb") as f:
            f.write(data)
        os.replace(local + ".part", local)
    return local
