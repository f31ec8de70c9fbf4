"""The Beam ingestion job: three passes, no image bytes in any shuffle.

(a) Scan (parallel, per file): read, validate, decode, hash, encode the tf.Example. The example is
    appended to a spill file of the worker's bundle; only a metadata row (hashes, sizes, where the
    example was spilled) is written, to a metadata file of the bundle. Pixels and bytes never leave
    the worker: what crosses the runner is one file name per bundle.
(b) Plan (one step, metadata only; plan.py): exact and near duplicates, label conflicts, splits,
    and for every (split, shard) the ordered list of spilled examples; members.jsonl and
    quarantine.jsonl are written here.
(c) Write (parallel, per shard): copy each shard's examples from the spill, in plan order, into a
    GZIP TFRecord file (records.py: no TensorFlow). Then ingest_summary.json is written, last, and
    the work folder (listing chunks, spill) is deleted.

Shard writing is ours rather than Beam's WriteToTFRecord: that sink assigns elements to shards at
random and in arrival order, while reruns here must be byte-identical (same shard for a cluster,
same order inside a shard), and the plan already knows both.

The same code runs on the DirectRunner (in one process, or one process per core) and on Dataflow;
the work folder then lives next to the output on gs://.
"""
from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from components.gcloud import beam_gcs_on_emulator
from components.ingest import outputs
from components.ingest.listing import ImageInput, Listing, resolve_inputs
from components.ingest.plan import QuarantineRow, Row, ScanRow, holdout_split, make_plan, parse_row_line, row_line
from components.ingest.records import GzipTFRecordWriter, parse_example

beam_gcs_on_emulator()   # in each worker process too (they import this module)

WORK_DIR = "_ingest_work"          # inside the output folder while the job runs; deleted at the end


def _join(*parts: str) -> str:
    return FileSystems.join(*parts)


def _write_lines(path: str, lines) -> None:
    with FileSystems.create(path) as f:
        for line in lines:
            f.write(line.encode())


def _read_lines(path: str):
    with FileSystems.open(path, compression_type="uncompressed") as f:
        for line in f.read().decode().splitlines():
            if line:
                yield line


class _Progress:
    """Counts done items in a local folder the launcher polls (one byte per item; no-op without one)."""

    def __init__(self, folder: str | None, kind: str):
        self._f = open(os.path.join(folder, f"{kind}-{uuid.uuid4().hex}"), "ab", buffering=0) if folder else None

    def tick(self) -> None:
        if self._f:
            self._f.write(b".")

    def close(self) -> None:
        if self._f:
            self._f.close()


def planned_writes(folder: str) -> int | None:
    """The number of examples the plan decided to write (None until the plan ran)."""
    try:
        with open(os.path.join(folder, "planned-writes")) as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def count_progress(folder: str, kind: str) -> int:
    try:
        return sum(e.stat().st_size for e in os.scandir(folder) if e.name.startswith(kind + "-"))
    except OSError:
        return 0


# ------------------------------------------------------------------------------------ pass (a)
class _Scan(beam.DoFn):
    def __init__(self, opts, work_dir: str, progress_dir: str | None):
        self._opts, self._work, self._progress_dir = opts, work_dir, progress_dir

    def setup(self):
        self._progress = _Progress(self._progress_dir, "scan")

    def start_bundle(self):
        name = uuid.uuid4().hex
        self._spill_name = f"spill-{name}.bin"
        self._meta_path = _join(self._work, f"meta-{name}.jsonl")
        self._spill = FileSystems.create(_join(self._work, self._spill_name))
        self._meta = FileSystems.create(self._meta_path)
        self._offset = 0

    def process(self, chunk_path: str):
        """One chunk of the listing: loose files one by one; archive members by byte ranges, the
        neighbouring members of one archive fetched together (archives.read_members)."""
        from components.ingest.archives import MemberError, entry_from_list, read_members
        groups: dict[tuple[str, str], list[ImageInput]] = {}
        for item in _read_chunk(chunk_path):
            if item.archive:
                groups.setdefault((item.archive, item.archive_version), []).append(item)
            else:
                self._scan(item, None)
        for (archive, version), items in groups.items():
            entries = [(it, entry_from_list(it.entry)) for it in items]
            for item, data in read_members(archive, version, entries, self._opts.max_file_bytes):
                if isinstance(data, MemberError):
                    self._write_row(QuarantineRow.of(item, data.reason, data.detail))
                else:
                    self._scan(item, data)
        return ()

    def _write_row(self, row: Row) -> None:
        self._meta.write(row_line(row).encode())
        self._progress.tick()

    def _scan(self, item: ImageInput, data: bytes | None) -> None:
        from components.ingest.images import decode_file
        kind, payload = decode_file(item, self._opts, data)
        if kind == "ok":
            data = payload.example.SerializeToString(deterministic=True)
            self._spill.write(data)
            f = payload.example.features.feature
            row: Row = ScanRow.of(item, payload, f["sha256"].bytes_list.value[0].decode(), self._spill_name,
                                  self._offset, len(data))
            self._offset += len(data)
        else:
            row = QuarantineRow.of(item, payload["reason"], payload.get("detail", ""))
        self._write_row(row)

    def finish_bundle(self):
        self._spill.close()
        self._meta.close()
        yield WindowedValue(self._meta_path, 0, (GlobalWindow(),))

    def teardown(self):
        self._progress.close()


def _read_chunk(path: str):
    for line in _read_lines(path):
        yield ImageInput.from_list(json.loads(line))


# ------------------------------------------------------------------------------------ pass (b)
def _plan(meta_paths: list[str], work_dir: str, rejected_path: str, opts, split_buckets, n_inputs: int,
          out_dir: str, progress_dir: str | None, holdout_names: Sequence[str] = ()):
    def rows():
        for p in sorted(meta_paths):
            for line in _read_lines(p):
                yield parse_row_line(line)
    rejected = [json.loads(line) for line in _read_lines(rejected_path)]
    plan = make_plan(rows(), rejected, opts, split_buckets, n_inputs, holdout_names)
    if progress_dir:
        with open(os.path.join(progress_dir, "planned-writes"), "w") as f:
            f.write(str(plan.summary["written"]))
    _write_lines(_join(out_dir, outputs.MEMBERS_FILE), plan.member_lines())
    _write_lines(_join(out_dir, outputs.QUARANTINE_FILE), plan.quarantine_lines())
    for (split, shard), refs in sorted(plan.shards.items()):
        # each shard's reading order goes to a file: no list of 200k references through the runner
        refs_path = _join(work_dir, f"refs-{split}-{shard:05d}.jsonl")
        _write_lines(refs_path, (json.dumps(r) + "\n" for r in refs))
        yield beam.pvalue.TaggedOutput("shards", ((split, shard), plan.num_shards, refs_path))
    yield plan.summary


# ------------------------------------------------------------------------------------ pass (c)
class _WriteShard(beam.DoFn):
    def __init__(self, out_dir: str, work_dir: str, progress_dir: str | None):
        self._out, self._work, self._progress_dir = out_dir, work_dir, progress_dir

    def setup(self):
        self._progress = _Progress(self._progress_dir, "write")

    def process(self, task):
        (split, shard), num_shards, refs_path = task
        refs = (json.loads(line) for line in _read_lines(refs_path))
        path = outputs.shard_path(self._out, split, shard, num_shards)
        readers: dict[str, Any] = {}
        try:
            with GzipTFRecordWriter(FileSystems.create(path, compression_type="uncompressed")) as w:
                for spill, offset, length, cluster_id in refs:
                    f = readers.get(spill)
                    if f is None:
                        f = readers[spill] = FileSystems.open(_join(self._work, spill),
                                                              compression_type="uncompressed")
                    f.seek(offset)
                    ex = parse_example(f.read(length))
                    ex.features.feature["cluster_id"].bytes_list.value.append(cluster_id.encode())
                    ex.features.feature["split"].bytes_list.value.append(split.encode())
                    w.write(ex.SerializeToString(deterministic=True))
                    self._progress.tick()
                count = w.count
        finally:
            for f in readers.values():
                f.close()
        yield split, shard, count

    def teardown(self):
        self._progress.close()


def _finish(summary: dict, written: list, out_dir: str, work_dir: str, feedback: dict | None = None) -> None:
    n = sum(c for _, _, c in written)
    if n != summary["written"]:
        raise RuntimeError(f"ingestion wrote {n} examples but planned {summary['written']}")
    if feedback:   # how curator feedback applied (listing.match_feedback); unmatched decisions warned about
        summary = {**summary, "feedback": feedback}
        if feedback["unmatched"]:
            summary["warnings"] = [*summary["warnings"], f"{feedback['unmatched']} curator feedback decisions "
                                   "match no input (moved elsewhere, or the content changed): "
                                   + ", ".join(feedback["unmatched_paths"][:5])]
    outputs.write_summary(out_dir, summary)   # last: its presence means the output is complete
    outputs.remove_tree(work_dir)


# ------------------------------------------------------------------------------------ the job
def prepare_output(out_dir: str, split_names: Sequence[str]) -> None:
    """Clear what an earlier ingestion left in `out_dir` (shards of any split set, side files) and
    create the split folders."""
    outputs.clear_output(out_dir)
    for name in split_names:
        if not FileSystems.exists(outputs.split_dir(out_dir, name)):
            FileSystems.mkdirs(outputs.split_dir(out_dir, name))


def build_ingest(pipeline, data_input: str | Listing, out_dir: str, opts, split_buckets: Sequence[tuple[str, int]],
                 progress_dir: str | None = None) -> int:
    """Adds ingestion + writing to `pipeline`; returns the number of inputs (listed before running).

    `data_input` is a folder / manifest / gs:// prefix (listed here, or taken from the run's listing
    session) or a Listing. Files are written under `out_dir`; the work folder `out_dir/_ingest_work`
    holds the listing chunks and the spill until the job ends."""
    listing = data_input if isinstance(data_input, Listing) else resolve_inputs(data_input, opts)
    holdouts = tuple(listing.holdout_names)
    split_names = [name for name, _ in split_buckets] + [holdout_split(h) for h in holdouts]
    prepare_output(out_dir, split_names)
    work_dir = _join(out_dir, WORK_DIR)
    outputs.remove_tree(work_dir)  # left by an interrupted run
    FileSystems.mkdirs(work_dir)
    items = listing.items
    chunk = max(1, min(1000, -(-len(items) // 64)))      # >= 64 work units when there are enough files
    chunk_paths = []
    for k in range(0, len(items), chunk):
        path = _join(work_dir, f"chunk-{k // chunk:06d}.jsonl")
        _write_lines(path, (json.dumps(it.to_list()) + "\n" for it in items[k:k + chunk]))
        chunk_paths.append(path)
    rejected_path = _join(work_dir, "rejected.jsonl")
    _write_lines(rejected_path, (json.dumps(r, sort_keys=True) + "\n" for r in listing.rejected))

    metas = (pipeline
             | "ListingChunks" >> beam.Create(chunk_paths, reshuffle=False)
             | "Distribute" >> beam.Reshuffle()
             | "Scan" >> beam.ParDo(_Scan(opts, work_dir, progress_dir)))
    n_inputs, buckets = listing.n_inputs, list(split_buckets)
    planned = (pipeline
               | "Start" >> beam.Create([None])
               | "Plan" >> beam.FlatMap(lambda _, m: _plan(m, work_dir, rejected_path, opts, buckets, n_inputs,
                                                            out_dir, progress_dir, holdouts),
                                        beam.pvalue.AsList(metas)).with_outputs("shards", main="summary"))
    written = (planned.shards
               | "DistributeShards" >> beam.Reshuffle()
               | "WriteShards" >> beam.ParDo(_WriteShard(out_dir, work_dir, progress_dir)))
    (planned.summary
     | "WriteSummary" >> beam.Map(_finish, beam.pvalue.AsList(written), out_dir, work_dir, listing.feedback))
    return n_inputs


def run_ingest(data_input: str | Listing, out_dir: str, opts, split_buckets, beam_args: Sequence[str] = (),
               progress_dir: str | None = None) -> dict:
    """Builds and runs the job; returns the summary."""
    from apache_beam.options.pipeline_options import PipelineOptions
    with beam.Pipeline(options=PipelineOptions(list(beam_args))) as p:
        build_ingest(p, data_input, out_dir, opts, split_buckets, progress_dir)
    return outputs.read_summary(out_dir)
