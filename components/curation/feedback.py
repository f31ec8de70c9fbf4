"""Curator decisions -> the feedback file ingestion honours (config key `ingest.feedback`).

Tags set in the App: `exclude` (drop the file: ingestion quarantines it with reason
`curator_excluded`) and `relabel:<label>` (`relabel:real`, `relabel:synthesized`). The file is JSONL,
one decision per input path, sorted by path:
  {"path": "...", "action": "exclude"}
  {"path": "...", "action": "relabel", "label": "real"}
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
    for path, tags in zip(*tagged.values(["path", "tags"])):
        relabels = sorted({t[len(RELABEL_PREFIX):].strip().lower() for t in tags if t.startswith(RELABEL_PREFIX)})
        invalid = [r for r in relabels if r not in LABELS]
        if invalid or len(relabels) > 1:
            bad.append(f"{path} ({', '.join(RELABEL_PREFIX + r for r in relabels)})")
            continue
        if EXCLUDE_TAG in tags:
            out[path] = {"path": path, "action": "exclude"}
        elif relabels:
            out[path] = {"path": path, "action": "relabel", "label": relabels[0]}
    if bad:
        raise CurationError(f"{len(bad)} samples have an invalid or conflicting relabel tag (use "
                            f"{' or '.join(RELABEL_PREFIX + label for label in LABELS)}): {'; '.join(bad[:5])}")
    return [out[p] for p in sorted(out)]


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
