"""Beam ingestion of labelled images (local or gs://): validate, quarantine, deduplicate, split,
write deterministic GZIP TFRecords in the TFX Examples layout.

Every input file ends up in exactly one place, recorded in `members.jsonl`:
  written | exact_duplicate | near_duplicate | quarantined (with a reason, also in quarantine.jsonl)
and `ingest_summary.json` counts them: inputs == written + exact_duplicates + near_duplicates +
quarantined. Splits are assigned per duplicate cluster, so no cluster straddles splits.

Used by the pipeline (the `Executor` of ImageExampleGen) and by `synthdetect ingest`.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
from typing import Any, Sequence

import apache_beam as beam
from absl import logging
from apache_beam.io.filesystems import FileSystems
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen import base_example_gen_executor, driver
from tfx.components.example_gen import utils as example_gen_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.components.util import examples_utils
from tfx.utils import proto_utils

from components.ingest import dedup
from components.ingest.images import (Decoded, ImageInput, IngestOptions, apply_feedback, decode_file,
                                      list_inputs, quarantine_record, read_feedback)

QUARANTINE_FILE = "quarantine.jsonl"
SUMMARY_FILE = "ingest_summary.json"
MEMBERS_FILE = "members.jsonl"
STATUSES = ("written", "exact_duplicate", "near_duplicate", "quarantined")


# ------------------------------------------------------------------------------------ options
def ingest_options(exec_properties: dict[str, Any]) -> IngestOptions:
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if not raw:
        return IngestOptions()
    cc = example_gen_pb2.CustomConfig()
    json_format.Parse(raw, cc)
    st = struct_pb2.Struct()
    if cc.custom_config.Is(struct_pb2.Struct.DESCRIPTOR):
        cc.custom_config.Unpack(st)
    return IngestOptions.from_dict(json_format.MessageToDict(st))


def pack_options(opts: dict) -> example_gen_pb2.CustomConfig:
    st = struct_pb2.Struct()
    st.update({k: v for k, v in opts.items() if v is not None})
    cc = example_gen_pb2.CustomConfig()
    cc.custom_config.Pack(st)
    return cc


def resolve_inputs(data_input: str, opts: IngestOptions) -> tuple[list[ImageInput], list[dict]]:
    """Listed inputs after curator feedback, and quarantine records of the excluded ones."""
    items = list_inputs(data_input)
    if opts.feedback:
        return apply_feedback(items, read_feedback(opts.feedback))
    return items, []


def inputs_fingerprint(data_input: str, opts: IngestOptions) -> str:
    """Changes when any input file (path, size, mtime), the manifest, or the feedback changes."""
    h = hashlib.sha256()
    items, excluded = resolve_inputs(data_input, opts)
    paths = sorted([i.path for i in items] + [e["path"] for e in excluded])
    for it in sorted(items, key=lambda i: i.path):
        h.update(f"{it.path}\t{it.label}\t{it.source}\t{it.generator}\t{it.content}\n".encode())
    # paths are literal names, not patterns: escape glob characters ("a[1].jpg")
    patterns = [p if "://" in p else glob.escape(p) for p in paths]
    for m in FileSystems.match(patterns) if patterns else []:
        for meta in m.metadata_list:
            h.update(f"{meta.path}\t{meta.size_in_bytes}\t{meta.last_updated_in_seconds}\n".encode())
    h.update(json.dumps(excluded, sort_keys=True).encode())
    return f"synthdetect-inputs:{h.hexdigest()}"


# ------------------------------------------------------------------------------------ Beam steps
def _member(rec: dict, status: str, reason: str = "", cluster_id: str = "", representative: bool = False,
            split: str = "") -> dict:
    return {"path": rec["path"], "label": rec["label"], "source": rec.get("source", ""),
            "generator": rec.get("generator", ""), "content": rec.get("content", ""),
            "sha256": rec.get("sha256", ""), "cluster_id": cluster_id, "representative": representative,
            "status": status, "reason": reason, "split": split}


class _Decode(beam.DoFn):
    def __init__(self, opts: IngestOptions):
        self._opts = opts

    def process(self, item: ImageInput):
        kind, payload = decode_file(item, self._opts)
        beam.metrics.Metrics.counter("synthdetect_ingest", "decoded" if kind == "ok" else "quarantined").inc()
        if kind == "ok":
            d: Decoded = payload
            f = d.example.features.feature
            yield {"path": item.path, "label": item.label, "source": item.source, "generator": item.generator,
                   "content": item.content, "sha256": f["sha256"].bytes_list.value[0].decode(),
                   "pixel_sha": d.pixel_sha, "phash": d.phash, "pixels": d.pixels,
                   "example": d.example.SerializeToString(deterministic=True)}
        else:
            yield beam.pvalue.TaggedOutput("quarantine", payload)


def _rank(rec: dict) -> tuple:
    """Representative of a group: the largest copy, then the smallest path (deterministic)."""
    return (-rec["pixels"], rec["path"])


class _ResolveExact(beam.DoFn):
    """One group of byte-identical pixels -> its representative, exact duplicates, or conflicts."""

    def process(self, kv):
        _, recs = kv
        recs = sorted(recs, key=_rank)
        if len({r["label"] for r in recs}) > 1 and len(recs) > 1:
            for r in recs:
                yield beam.pvalue.TaggedOutput("conflict", r)
            return
        yield recs[0]
        for r in recs[1:]:
            yield beam.pvalue.TaggedOutput("duplicate", r)


class _ResolveNear(beam.DoFn):
    """One near-duplicate cluster of exact representatives -> written example + near duplicates."""

    def __init__(self, split_buckets: Sequence[tuple[str, int]]):
        self._split_buckets = list(split_buckets)

    def process(self, kv):
        root, recs = kv
        recs = sorted(recs, key=_rank)
        cluster_id = root[:16]
        if len({r["label"] for r in recs}) > 1:
            for r in recs:
                yield beam.pvalue.TaggedOutput("member", _member(r, "quarantined", "label_conflict", cluster_id))
                yield beam.pvalue.TaggedOutput("quarantine", _quarantine(r, "label_conflict",
                                                                         f"near-duplicate cluster {cluster_id}"))
            return
        rep = recs[0]
        # The split follows the representative's file bytes, not the cluster id: the cluster id
        # comes from decoded pixels, which differ between raw mode (JPEG draft decoding) and format
        # neutralisation, and a comparison of the two must train and evaluate on the same images.
        # Only the representative is written, so no cluster can straddle splits either way.
        split = dedup.split_for(rep["sha256"], self._split_buckets)
        import tensorflow as tf
        ex = tf.train.Example.FromString(rep["example"])
        ex.features.feature["cluster_id"].bytes_list.value.append(cluster_id.encode())
        yield (split, cluster_id, ex.SerializeToString(deterministic=True))
        yield beam.pvalue.TaggedOutput("member", _member(rep, "written", "", cluster_id, True, split))
        for r in recs[1:]:
            yield beam.pvalue.TaggedOutput("member", _member(r, "near_duplicate", "", cluster_id))


def _quarantine(rec: dict, reason: str, detail: str = "") -> dict:
    return quarantine_record(rec["path"], rec["label"], rec.get("source", ""), reason, detail)


@beam.ptransform_fn
def NearDuplicateRoots(id_hashes, tables: int, bits: int, max_distance: int):
    """(id, 64-bit pHash) -> singleton {id: cluster root} for every id that has a near duplicate.

    LSH buckets (GroupByKey on (table, sampled bits)) -> exact Hamming check of the candidates in
    each bucket -> distinct verified pairs -> union-find in one place. Only ids with a near duplicate
    reach the union-find, so its input stays small even at 200k images."""
    positions = dedup.lsh_positions(tables, bits)
    return (id_hashes
            | "LshKeys" >> beam.FlatMap(lambda ih: [(k, ih) for k in dedup.lsh_keys(ih[1], positions)])
            | "GroupBuckets" >> beam.GroupByKey()
            | "VerifyPairs" >> beam.FlatMap(lambda kv: dedup.close_pairs(list(kv[1]), max_distance))
            | "UniquePairs" >> beam.Distinct()
            | "AllPairs" >> beam.combiners.ToList()
            | "UnionFind" >> beam.Map(lambda e: dedup.clusters([], e)))


@beam.ptransform_fn
def IngestImages(pipeline, items: list[ImageInput], excluded: list[dict], opts: IngestOptions,
                 split_buckets: Sequence[tuple[str, int]]):
    """-> {"examples": (split, cluster_id, serialized tf.Example), "members": dict, "quarantine": dict}"""
    decoded = (pipeline
               | "ListInputs" >> beam.Create(items, reshuffle=False)
               | "Distribute" >> beam.Reshuffle()
               | "DecodeValidate" >> beam.ParDo(_Decode(opts)).with_outputs("quarantine", main="ok"))
    bad = decoded.quarantine
    if excluded:
        bad = (bad, pipeline | "CuratorExcluded" >> beam.Create(excluded)) | "AllBad" >> beam.Flatten()
    ok = decoded.ok
    max_d = opts.near_duplicate_max_distance if opts.dedup else -1

    if opts.dedup:
        exact = (ok | "ByPixels" >> beam.Map(lambda r: (r["pixel_sha"], r))
                 | "GroupPixels" >> beam.GroupByKey()
                 | "ResolveExact" >> beam.ParDo(_ResolveExact()).with_outputs("duplicate", "conflict", main="rep"))
        reps, exact_dups, conflicts = exact.rep, exact.duplicate, exact.conflict
        roots = (reps | "IdHash" >> beam.Map(lambda r: (r["pixel_sha"], r["phash"]))
                 | "NearDuplicates" >> NearDuplicateRoots(opts.lsh_tables, opts.lsh_bits, max_d))
        roots_si = beam.pvalue.AsSingleton(roots)
        keyed = reps | "ByCluster" >> beam.Map(lambda r, m: (m.get(r["pixel_sha"], r["pixel_sha"]), r), roots_si)
        dup_members = exact_dups | "ExactDupMembers" >> beam.Map(
            lambda r, m: _member(r, "exact_duplicate", "", m.get(r["pixel_sha"], r["pixel_sha"])[:16]), roots_si)
        conflict_members = conflicts | "ConflictMembers" >> beam.Map(
            lambda r: _member(r, "quarantined", "label_conflict", r["pixel_sha"][:16]))
        bad = (bad, conflicts | "ConflictQuarantine" >> beam.Map(
            lambda r: _quarantine(r, "label_conflict", f"exact duplicate {r['pixel_sha'][:16]}"))) \
            | "AllBad2" >> beam.Flatten()
    else:
        keyed = ok | "OwnCluster" >> beam.Map(lambda r: (r["pixel_sha"] + ":" + r["path"], r))
        dup_members = conflict_members = None
    near = (keyed | "GroupClusters" >> beam.GroupByKey()
            | "ResolveNear" >> beam.ParDo(_ResolveNear(split_buckets)).with_outputs("member", "quarantine",
                                                                                    main="examples"))
    bad = (bad, near.quarantine) | "AllQuarantine" >> beam.Flatten()
    bad_members = bad | "QuarantineMembers" >> beam.Map(
        lambda q: _member(q, "quarantined", q["reason"]) if q["reason"] != "label_conflict" else None) \
        | "DropConflictDupes" >> beam.Filter(lambda m: m is not None)
    parts = [near.member, bad_members] + [p for p in (dup_members, conflict_members) if p is not None]
    members = parts | "AllMembers" >> beam.Flatten()
    return {"examples": near.examples, "members": members, "quarantine": bad}


def _write_shard(kv, out_dir: str, num_shards: int) -> str:
    """Write one (split, shard) group sorted by cluster id: byte-identical output on every run."""
    import tensorflow as tf
    (split, shard), records = kv
    path = os.path.join(out_dir, f"Split-{split}", f"data_tfrecord-{shard:05d}-of-{num_shards:05d}.gz")
    FileSystems.mkdirs(os.path.dirname(path)) if not FileSystems.exists(os.path.dirname(path)) else None
    with tf.io.TFRecordWriter(path, options=tf.io.TFRecordOptions(compression_type="GZIP")) as w:
        for _, serialized in sorted(records):
            w.write(serialized)
    return path


def _write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as f:
        f.write(text.encode())


def summarize(members: list[dict], opts: IngestOptions, split_names: Sequence[str]) -> dict:
    counts = {s: 0 for s in STATUSES}
    reasons: dict[str, int] = {}
    by_split = {s: {"real": 0, "synthesized": 0} for s in split_names}
    for m in members:
        counts[m["status"]] += 1
        if m["status"] == "quarantined":
            reasons[m["reason"]] = reasons.get(m["reason"], 0) + 1
        if m["status"] == "written":
            by_split[m["split"]][m["label"]] += 1
    inputs = len(members)
    return {
        "inputs": inputs,
        "written": counts["written"],
        "exact_duplicates": counts["exact_duplicate"],
        "near_duplicates": counts["near_duplicate"],
        "quarantined": counts["quarantined"],
        "quarantine_reasons": dict(sorted(reasons.items())),
        "written_by_split": by_split,
        "written_by_label": {lab: sum(v[lab] for v in by_split.values()) for lab in ("real", "synthesized")},
        "accounted_for": inputs == counts["written"] + counts["exact_duplicate"] + counts["near_duplicate"]
        + counts["quarantined"],
        "options": {k: v for k, v in dataclasses.asdict(opts).items() if k != "background"},
    }


def _write_reports(members: list[dict], quarantine: list[dict], out_dir: str, opts: IngestOptions,
                   split_names: Sequence[str], expected_inputs: int) -> None:
    members = sorted(members, key=lambda m: m["path"])
    summary = summarize(members, opts, split_names)
    summary["accounted_for"] = summary["accounted_for"] and summary["inputs"] == expected_inputs
    _write_text(os.path.join(out_dir, MEMBERS_FILE), "".join(json.dumps(m, sort_keys=True) + "\n" for m in members))
    _write_text(os.path.join(out_dir, QUARANTINE_FILE),
                "".join(json.dumps(q, sort_keys=True) + "\n" for q in sorted(quarantine, key=lambda q: q["path"])))
    _write_text(os.path.join(out_dir, SUMMARY_FILE), json.dumps(summary, indent=2, sort_keys=True) + "\n")


def num_shards_for(n_inputs: int) -> int:
    return max(1, min(256, n_inputs // 2000 + 1))


def build_ingest(pipeline, data_input: str, out_dir: str, opts: IngestOptions,
                 split_buckets: Sequence[tuple[str, int]]) -> int:
    """Adds ingestion + writing to `pipeline`; returns the number of inputs (listed before running)."""
    items, excluded = resolve_inputs(data_input, opts)
    n_inputs = len(items) + len(excluded)
    num_shards = num_shards_for(n_inputs)
    split_names = [name for name, _ in split_buckets]
    for name in split_names:
        split_dir = os.path.join(out_dir, f"Split-{name}")
        if FileSystems.exists(split_dir):  # shards of an earlier run must not survive into this one
            stale = [m.path for r in FileSystems.match([os.path.join(split_dir, "data_tfrecord-*")])
                     for m in r.metadata_list]
            if stale:
                FileSystems.delete(stale)
        else:
            FileSystems.mkdirs(split_dir)
    out = pipeline | "Ingest" >> IngestImages(items, excluded, opts, split_buckets)
    (out["examples"]
     | "ToShard" >> beam.Map(lambda t: ((t[0], int(t[1], 16) % num_shards), (t[1], t[2])))
     | "GroupShards" >> beam.GroupByKey()
     | "WriteShards" >> beam.Map(_write_shard, out_dir, num_shards))
    members = out["members"] | "MembersList" >> beam.combiners.ToList()
    quarantine = out["quarantine"] | "QuarantineList" >> beam.combiners.ToList()
    (members | "WriteReports" >> beam.Map(_write_reports, beam.pvalue.AsSingleton(quarantine), out_dir, opts,
                                          split_names, n_inputs))
    return n_inputs


def read_summary(out_dir: str) -> dict:
    with FileSystems.open(os.path.join(out_dir, SUMMARY_FILE)) as f:
        return json.loads(f.read())


# ------------------------------------------------------------------------------------ TFX glue
def _split_buckets(exec_properties: dict) -> list[tuple[str, int]]:
    output_config = example_gen_pb2.Output()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY], output_config)
    return [(s.name, s.hash_buckets) for s in output_config.split_config.splits]


def _data_input(exec_properties: dict) -> str:
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
    base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    pattern = input_config.splits[0].pattern
    # '*' means "the folder layout"; any other pattern names a manifest file inside input_base.
    return base if pattern == "*" else os.path.join(base, pattern)


class Driver(driver.FileBasedDriver):
    """Fingerprints every input file (not just the top-level entries TFX's glob would see), so the
    cached ExampleGen is reused exactly when no input, manifest or curator decision changed."""

    def resolve_exec_properties(self, exec_properties, pipeline_info, component_info):
        exec_properties = super().resolve_exec_properties(exec_properties, pipeline_info, component_info)
        exec_properties[example_gen_utils.FINGERPRINT_PROPERTY_NAME] = inputs_fingerprint(
            _data_input(exec_properties), ingest_options(exec_properties))
        return exec_properties


class Executor(base_example_gen_executor.BaseExampleGenExecutor):
    """ImageExampleGen executor: writes Split-*/ TFRecords plus ingest_summary.json, members.jsonl
    and quarantine.jsonl into the Examples artifact directory."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:  # required by the base class
        raise NotImplementedError("ImageExampleGen writes its splits itself (see Do)")

    def Do(self, input_dict, output_dict, exec_properties):
        self._log_startup(input_dict, output_dict, exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        buckets = _split_buckets(exec_properties)
        examples.split_names = artifact_utils.encode_split_names([name for name, _ in buckets])
        opts = ingest_options(exec_properties)
        with self._make_beam_pipeline() as p:
            n = build_ingest(p, _data_input(exec_properties), examples.uri, opts, buckets)
            logging.info("ingesting %d input files", n)
        summary = read_summary(examples.uri)
        for key in ("inputs", "written", "exact_duplicates", "near_duplicates", "quarantined"):
            examples.set_int_custom_property(f"ingest_{key}", int(summary[key]))
        examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(examples, "tfrecords_gzip")
        for name, by_label in summary["written_by_split"].items():
            if not sum(by_label.values()):
                logging.warning("split %s is empty", name)
