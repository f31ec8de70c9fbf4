"""The curators' FiftyOne dataset: built or updated idempotently from one pipeline run.

One sample per input file, keyed by the input `path` (so re-running `synthdetect curate` on the
same or a later run updates samples in place and keeps the curators' tags). Managed tags
(`quarantined`, `false_positive`, `false_negative`) are recomputed on every build; every other tag
(e.g. `exclude`, `relabel:real`) belongs to the curators and is never touched.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any


from components.curation import appconfig, brain
from components.curation.members import CurationError, default_cache_dir, iter_written, load_members, local_media
from components.ingest.listing import LABELS          # (negative, positive) for binary evaluation
from components.scoring.models import ModelError, resolve_model
from components.scoring.scorer import EMBEDDING_LAYER, ModelLoadError, Scorer

EVAL_KEY = "eval"
MANAGED_TAGS = ("quarantined", "false_positive", "false_negative", "holdout")
SAVED_VIEWS = ("false_positives", "false_negatives", "uncertain", "likely_label_errors", "duplicates", "quarantined",
               "by_source", "holdout")
DEFAULT_UNCERTAIN_MARGIN = 0.1
# a curator's tag: "I looked at this one" (the label-error queue leaves it out; kept across rebuilds)
REVIEWED_TAG = "reviewed"
TRAIN_SPLIT = "train"       # the split the Trainers fit (TrainArgs splits=["train"])
VIEW_DESCRIPTIONS = {
    "likely_label_errors": "Samples the model did not train on (eval split and held-out sets) whose label it "
                           "contradicts, most confident first (mistakenness > 0.5). Training-split samples are "
                           "left out: the model has fit their labels, right or wrong. Tag a sample 'reviewed' to "
                           "take it out of this queue.",
}
DEFAULT_THRESHOLD = 0.5
# Plain sample fields written from the members (name -> members key).
FIELDS = {"path": "path", "source": "source", "generator": "generator", "content": "content",
          "orig_format": "orig_format", "orig_mode": "orig_mode", "orig_width": "orig_width",
          "orig_height": "orig_height", "codec": "codec", "split": "split", "sha256": "sha256",
          "cluster_id": "cluster_id", "cluster_size": "cluster_size", "representative": "representative",
          "status": "status", "quarantine_reason": "quarantine_reason", "quarantine_detail": "detail",
          "holdout": "holdout"}  # the held-out set an input belongs to ("" for training data)

log = logging.getLogger(__name__)


@dataclasses.dataclass
class BuildResult:
    name: str
    run_id: str
    samples: int
    by_status: dict
    predicted: int = 0
    threshold: float | None = None
    model: str | None = None
    views: dict = dataclasses.field(default_factory=dict)   # saved view -> samples in it
    mistakenness: int = 0                                   # samples with a mistakenness
    brain: dict = dataclasses.field(default_factory=lambda: dataclasses.asdict(brain.BrainStatus()))
    map_png: str | None = None                              # the embeddings map as a picture (no App needed)
    notes: list = dataclasses.field(default_factory=list)


def _duplicate_image(member: dict, summary: dict):
    """Re-ingest a duplicate's original file exactly as ingestion would (it is not in the TFRecords):
    (encoded bytes, orig metadata) or (None, {})."""
    from components.ingest.images import decode_file
    from components.ingest.listing import ImageInput, member_input
    from schemas.config import IngestConfig
    opts = IngestConfig.from_dict(summary.get("options") or {})
    fields: dict[str, Any] = dict(label=member.get("label") or "real", source=member.get("source") or "unknown",
                  generator=member.get("generator") or "", content=member.get("content") or "unknown")
    # a member of an archive is read again by its byte range (archive/member path)
    item = member_input(member["path"], **fields) or ImageInput(path=member["path"], **fields)
    try:
        kind, payload = decode_file(item, opts)
    except Exception:  # noqa: BLE001 - an unreadable original shows no image, never fails the build
        return None, {}
    if kind != "ok":
        return None, {}
    ex = getattr(payload, "example", payload)
    f = ex.features.feature
    meta = {k: f[k].bytes_list.value[0].decode() for k in ("orig_format", "orig_mode", "codec") if k in f}
    meta.update({k: int(f[k].int64_list.value[0]) for k in ("orig_width", "orig_height") if k in f})
    return f["image_raw"].bytes_list.value[0], meta


def _logits(p: float) -> list[float]:
    p = min(max(float(p), 1e-6), 1 - 1e-6)
    return [math.log(1 - p), math.log(p)]


def build_dataset(name: str, run_id: str, examples_uri: str, model_dir: str | None = None,
                  threshold: float | None = None, uncertain_margin: float = DEFAULT_UNCERTAIN_MARGIN,
                  cache_dir: str | None = None, map_method: str = brain.DEFAULT_MAP_METHOD,
                  progress: Callable[[str], None] = lambda s: None, map_png: str | None = None) -> BuildResult:
    """The curators' dataset `name` for one run's ingestion output (and model). `map_png`: where the
    embeddings map is drawn (default: `maps/<name>.png` in the synthdetect cache)."""
    import fiftyone as fo
    from fiftyone import ViewField as F

    members, summary = load_members(examples_uri)
    progress(f"{len(members)} input files in run {run_id}")
    cache_dir = cache_dir or default_cache_dir()
    cluster_sizes: dict[str, int] = {}
    for m in members:
        if m.get("cluster_id"):
            cluster_sizes[m["cluster_id"]] = cluster_sizes.get(m["cluster_id"], 0) + 1
    for m in members:
        m["cluster_size"] = cluster_sizes.get(m.get("cluster_id") or "", 0)
        m["quarantine_reason"] = (m.get("reason") or "") if m["status"] == "quarantined" else ""
        m["representative"] = bool(m.get("representative"))
        m["split"] = m.get("split") or ""
        m["holdout"] = m.get("holdout") or ""
        if m["status"] != "quarantined":
            m["detail"] = ""

    # ---- images to score: written (TFRecord bytes, what the model was evaluated on) and duplicates
    images: dict[str, bytes] = {}
    notes: list[str] = []
    if model_dir:
        for row in iter_written(examples_uri, with_image=True):
            images[row["path"]] = row["image_raw"]
    for m in members:
        if m["status"] in ("exact_duplicate", "near_duplicate"):
            data, meta = _duplicate_image(m, summary) if (model_dir or not m.get("orig_format")) else (None, {})
            for k, v in meta.items():
                if m.get(k) is None:
                    m[k] = v
            if data is not None and model_dir:
                images[m["path"]] = data

    # ---- the dataset: sync samples by path
    ds = fo.load_dataset(name) if fo.dataset_exists(name) else fo.Dataset(name)
    ds.persistent = True
    by_path = {m["path"]: m for m in members}
    existing = dict(zip(*ds.values(["path", "id"]), strict=True)) if len(ds) and ds.has_sample_field("path") else {}
    stale = [sid for p, sid in existing.items() if p not in by_path]
    if stale:
        ds.delete_samples(stale)
        notes.append(f"removed {len(stale)} samples of files no longer in the input")

    def fields_of(m: dict) -> dict:
        out = {field: m.get(key) for field, key in FIELDS.items()}
        out["ground_truth"] = fo.Classification(label=m["label"]) if m.get("label") in LABELS else None
        return out

    new = [m for m in members if m["path"] not in existing]
    if new:
        ds.add_samples([fo.Sample(filepath=local_media(m["path"], cache_dir), **fields_of(m)) for m in new],
                       progress=False)
    old = [m for m in members if m["path"] in existing]
    if old:
        paths = [m["path"] for m in old]
        ids = [existing[p] for p in paths]
        view = ds.select(ids, ordered=True)
        view.set_values("filepath", [local_media(p, cache_dir) for p in paths], progress=False)
        rows = [fields_of(m) for m in old]
        for field in list(FIELDS) + ["ground_truth"]:
            if field != "path":
                view.set_values(field, [r[field] for r in rows], progress=False)
    progress(f"dataset {name!r}: {len(new)} samples added, {len(old)} updated")

    # ---- managed tags
    ds.untag_samples(list(MANAGED_TAGS))
    ds.match(F("status") == "quarantined").tag_samples("quarantined")
    ds.match(F("holdout") != "").tag_samples("holdout")

    # ---- predictions, evaluation, hardness, uniqueness
    for key in ("hardness", "uniqueness"):
        if key in ds.list_brain_runs():
            ds.delete_brain_run(key)
    if EVAL_KEY in ds.list_evaluations():
        ds.delete_evaluation(EVAL_KEY)
    for field in ("prediction", "p_synthesized", "hardness", "uniqueness"):
        if ds.has_sample_field(field):
            ds.set_values(field, [None] * len(ds), progress=False)

    result = BuildResult(name=name, run_id=run_id, samples=len(ds),
                         by_status={s: sum(1 for m in members if m["status"] == s) for s in
                                    ("written", "exact_duplicate", "near_duplicate", "quarantined",
                                     "leaked_into_training")},
                         model=model_dir, notes=notes)
    if model_dir:
        try:
            thr = threshold if threshold is not None else resolve_model(model_dir).threshold
            scorer = Scorer(model_dir)
        except (ModelError, ModelLoadError) as e:
            raise CurationError(str(e)) from None
        if thr is None:
            thr = DEFAULT_THRESHOLD
            notes.append(f"the model ships no calibrated threshold; using {thr}")
        result.threshold = thr
        progress(f"scoring {len(images)} images with {model_dir} (threshold {thr:g})")
        paths = sorted(images)
        p = scorer.score_batched([images[q] for q in paths])
        ids_by_path = dict(zip(*ds.values(["path", "id"]), strict=True))
        ids = [ids_by_path[q] for q in paths]
        preds = []
        for pi in p:
            label = LABELS[1] if pi >= thr else LABELS[0]
            preds.append(fo.Classification(label=label, confidence=float(pi if label == LABELS[1] else 1 - pi),
                                           logits=_logits(pi)))
        scored = ds.select(ids, ordered=True)
        scored.set_values("p_synthesized", [float(x) for x in p], progress=False)
        scored.set_values("prediction", preds, progress=False)
        result.predicted = len(ids)
        if ids:
            scored = ds.exists("prediction").exists("ground_truth")
            scored.evaluate_classifications("prediction", gt_field="ground_truth", eval_key=EVAL_KEY,
                                            method="binary", classes=list(LABELS), progress=False)
            ds.match(F(EVAL_KEY) == "FP").tag_samples("false_positive")
            ds.match(F(EVAL_KEY) == "FN").tag_samples("false_negative")
            import fiftyone.brain as fob
            fob.compute_hardness(ds.exists("prediction"), "prediction", hardness_field="hardness", progress=False)
        result.mistakenness = brain.compute_mistakenness(ds)
        fingerprint = brain.embeddings_fingerprint(brain.model_fingerprint(scorer.model_dir), EMBEDDING_LAYER,
                                                   paths, [images[q] for q in paths])
        status = brain.update_embeddings(ds, ids, [images[q] for q in paths], scorer.embeddings, fingerprint,
                                         method=map_method, unavailable=lambda: scorer.embedding_note,
                                         progress=progress)
        result.brain = dataclasses.asdict(status)
        if status.embedded:
            from components.cache import usable_cache_dir
            result.map_png = brain.write_map_png(ds, map_png or str(usable_cache_dir("maps") / f"{name}.png"))
            import fiftyone.brain as fob
            fob.compute_uniqueness(ds.exists(brain.EMBEDDING_FIELD), uniqueness_field="uniqueness",
                                   embeddings=brain.EMBEDDING_FIELD, progress=False)
        elif ids:
            notes.append("uniqueness, map and similarity index skipped: " + status.embeddings)
        ds.info["uncertain_margin"] = uncertain_margin
    else:
        brain.clear(ds)

    # ---- saved views and run info
    ds.info.update({"run_id": run_id, "examples_uri": examples_uri, "model": model_dir or "",
                    "threshold": result.threshold, "ingest_summary": summary})
    appconfig.configure(ds)
    ds.save()
    result.views = save_views(ds, result.threshold, uncertain_margin)
    result.samples = len(ds)
    return result


def saved_view_definitions(ds, threshold: float | None, margin: float) -> dict:
    """name -> (view, the same samples ungrouped). `duplicates` and `by_source` are dynamic groups
    (the App shows one tile per cluster / source and opens the group on click)."""
    from fiftyone import ViewField as F
    thr = threshold if threshold is not None else 0.5
    distance = (F("p_synthesized") - thr).abs()
    duplicates = ds.match(F("cluster_size") > 1)
    return {
        "false_positives": (ds.match(F(EVAL_KEY) == "FP").sort_by("p_synthesized", reverse=True),) * 2,
        "false_negatives": (ds.match(F(EVAL_KEY) == "FN").sort_by("p_synthesized"),) * 2,
        "uncertain": (ds.match((F("p_synthesized") != None) & (distance < margin)).sort_by(distance),) * 2,  # noqa: E711 - a FiftyOne query expression, not a comparison
        # the model disagrees with ground_truth, most confident first (brain.compute_mistakenness), on
        # samples it did not train on (a model reproduces the labels it was fit to, wrong ones too),
        # without those a curator has reviewed
        "likely_label_errors": (ds.match((F("split") != TRAIN_SPLIT) & (F(brain.MISTAKENNESS_FIELD) > 0.5)
                                         & ~F("tags").contains(REVIEWED_TAG))
                                .sort_by(brain.MISTAKENNESS_FIELD, reverse=True),) * 2,
        "duplicates": (duplicates.group_by("cluster_id", order_by="representative", reverse=True), duplicates),
        "quarantined": (ds.match(F("status") == "quarantined").sort_by("quarantine_reason"),) * 2,
        "by_source": (ds.group_by("source", order_by="path"), ds),
        # held-out samples (never trained on), per set, their predictions from the most synthesized down
        "holdout": (ds.match(F("holdout") != "").sort_by([("holdout", 1), ("p_synthesized", -1)]),) * 2,
    }


def save_views(ds, threshold: float | None, margin: float) -> dict:
    """Saves (overwriting) every curator view; returns view -> number of samples in it."""
    counts = {}
    for name, (view, flat) in saved_view_definitions(ds, threshold, margin).items():
        ds.save_view(name, view, description=VIEW_DESCRIPTIONS.get(name), overwrite=True)
        counts[name] = len(flat)
    return counts
