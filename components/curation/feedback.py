"""Curator decisions -> the feedback file ingestion honours (config key `ingest.feedback`).

Tags set in the App: `exclude` (drop the file: ingestion quarantines it with reason
`curator_excluded`) and `relabel:<label>` (`relabel:real`, `relabel:synthesized`). The file is JSONL,
one decision per input, sorted by path, naming the file by content (sha256, and size for a local
file) with its path as a hint, so that the decisions still apply to the same images at another path
(a clone, a moved bucket; components/ingest/listing.py:match_feedback):
  {"path": "...", "action": "exclude", "sha256": "...", "size": 1234}
  {"path": "...", "action": "relabel", "label": "real", "sha256": "...", "size": 1234}
`exclude` wins over a relabel of the same sample.
"""
from __future__ import annotations

import dataclasses
import json
import os

from components.curation.members import CurationError
from components.ingest.listing import LABELS

EXCLUDE_TAG = "exclude"
RELABEL_PREFIX = "relabel:"


@dataclasses.dataclass
class FeedbackResult:
    path: str
    excluded: int
    relabeled: int
    both: int          # samples tagged exclude and relabel (exported as exclude)


def decisions(ds) -> list[dict]:
    """Every curator decision in the dataset, one per input path, sorted by path."""
    from fiftyone import ViewField as F
    tagged = ds.match(F("tags").filter(
        (F() == EXCLUDE_TAG) | F().starts_with(RELABEL_PREFIX)).length() > 0)
    out: dict[str, dict] = {}
    bad = []
    shas = dict(zip(*tagged.values(["path", "sha256"]), strict=True)) if ds.has_sample_field("sha256") else {}
    for path, tags in zip(*tagged.values(["path", "tags"]), strict=True):
        relabels = sorted({t[len(RELABEL_PREFIX):].strip().lower() for t in tags if t.startswith(RELABEL_PREFIX)})
        invalid = [r for r in relabels if r not in LABELS]
        if invalid or len(relabels) > 1:
            bad.append(f"{path} ({', '.join(RELABEL_PREFIX + r for r in relabels)})")
            continue
        if EXCLUDE_TAG in tags:
            out[path] = {"path": path, "action": "exclude", **_content(path, shas.get(path))}
        elif relabels:
            out[path] = {"path": path, "action": "relabel", "label": relabels[0], **_content(path, shas.get(path))}
    if bad:
        raise CurationError(f"{len(bad)} samples have an invalid or conflicting relabel tag (use "
                            f"{' or '.join(RELABEL_PREFIX + label for label in LABELS)}): {'; '.join(bad[:5])}")
    return [out[p] for p in sorted(out)]


def _content(path: str, sha256: str | None) -> dict:
    """What identifies the file whatever its path: its sha256 (as ingestion recorded it) and, for a
    local file, its size (ingestion then reads only inputs of that size to find it after a move)."""
    out: dict = {"sha256": sha256} if sha256 else {}
    if sha256 and os.path.isfile(path):
        out["size"] = os.path.getsize(path)
    return out


def export_feedback(ds, out_path: str) -> FeedbackResult:
    """Writes the feedback file atomically; returns what it contains."""
    from fiftyone import ViewField as F
    rows = decisions(ds)
    out_dir = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(out_dir, exist_ok=True)
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    os.replace(tmp, out_path)
    both = len(ds.match_tags(EXCLUDE_TAG).match(F("tags").filter(F().starts_with(RELABEL_PREFIX)).length() > 0))
    return FeedbackResult(path=out_path, excluded=sum(r["action"] == "exclude" for r in rows),
                          relabeled=sum(r["action"] == "relabel" for r in rows), both=both)
