"""What an ingestion leaves behind, in one place: names, readers, and safe replacement of an output.

An ingestion output folder (the Examples artifact, or `synthdetect ingest --output`) holds
    Split-<split>/data_tfrecord-<shard>-of-<n>.gz   GZIP TFRecords of tf.Examples
    members.jsonl                                  every input's fate
    quarantine.jsonl                               the quarantined inputs with a reason
    ingest_summary.json                            counts; written LAST: a folder without it is
                                                   incomplete and is never read as an output

`synthdetect ingest` writes into a temporary sibling and replaces the output only when the job
succeeded (`atomic_output`), under a lock file next to the output (`OutputLock`) so a second writer
fails at once; locally the replacement is two renames, on gs:// a copy with the summary last.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator, Sequence

from schemas.config import is_gcs

SUMMARY_FILE = "ingest_summary.json"
MEMBERS_FILE = "members.jsonl"
QUARANTINE_FILE = "quarantine.jsonl"
SIDE_FILES = (SUMMARY_FILE, MEMBERS_FILE, QUARANTINE_FILE)
SPLIT_PREFIX = "Split-"


def _fs():
    """Beam's FileSystems (local paths and gs:// alike), loaded on first use: Beam takes seconds to
    import, and deciding whether a local output is safe needs none of it."""
    from apache_beam.io.filesystems import FileSystems

    from components.gcloud import beam_gcs_on_emulator
    beam_gcs_on_emulator()
    return FileSystems


class OutputError(Exception):
    """The output location is unusable (user mistake or a concurrent writer); one-line message."""


def split_dir(out_dir: str, split: str) -> str:
    return _fs().join(out_dir, f"{SPLIT_PREFIX}{split}")


def shard_path(out_dir: str, split: str, shard: int, num_shards: int) -> str:
    return _fs().join(split_dir(out_dir, split), f"data_tfrecord-{shard:05d}-of-{num_shards:05d}.gz")


def _open_text(path: str) -> str:
    with _fs().open(path, compression_type="uncompressed") as f:
        return f.read().decode()


def read_summary(out_dir: str) -> dict:
    return json.loads(_open_text(_fs().join(out_dir, SUMMARY_FILE)))


def read_members(out_dir: str) -> list[dict]:
    return [json.loads(line) for line in _open_text(_fs().join(out_dir, MEMBERS_FILE)).splitlines() if line]


def read_quarantine(out_dir: str) -> list[dict]:
    return [json.loads(line) for line in _open_text(_fs().join(out_dir, QUARANTINE_FILE)).splitlines()
            if line]


# -- read helpers for everything that reads an ingestion back (runs, report, curate, the pusher)
def has_file(out_dir: str, name: str) -> bool:
    return _fs().exists(_fs().join(out_dir, name))


def summary_bytes(out_dir: str) -> bytes:
    """ingest_summary.json exactly as stored (its hash is the data fingerprint); FileNotFoundError
    when the folder has none (not an ingestion output, or an incomplete one)."""
    path = _fs().join(out_dir, SUMMARY_FILE)
    if not _fs().exists(path):
        raise FileNotFoundError(path)
    with _fs().open(path, compression_type="uncompressed") as f:
        return f.read()


def fingerprint_of(summary: bytes) -> str:
    """The data fingerprint recorded in model.json and shown by `synthdetect runs`: the sha256 of
    ingest_summary.json as stored."""
    return "sha256:" + hashlib.sha256(summary).hexdigest()


def fingerprint(out_dir: str) -> str:
    return fingerprint_of(summary_bytes(out_dir))


def shards(out_dir: str, split: str = "*") -> dict[str, list[str]]:
    """Split name -> its TFRecord shards (sorted), for one split or all of them."""
    pattern = _fs().join(out_dir, f"{SPLIT_PREFIX}{split}", "data_tfrecord-*")
    out: dict[str, list[str]] = {}
    for m in sorted(m.path for r in _fs().match([pattern]) for m in r.metadata_list):
        split_name = m.rstrip("/").split("/")[-2].removeprefix(SPLIT_PREFIX)
        out.setdefault(split_name, []).append(m)
    return out


def write_summary(out_dir: str, summary: dict) -> None:
    with _fs().create(_fs().join(out_dir, SUMMARY_FILE)) as f:
        f.write((json.dumps(summary, indent=2, sort_keys=True) + "\n").encode())


def clear_output(out_dir: str) -> None:
    """Removes the summary first (the folder stops claiming to be complete), then the side files and
    every Split-*/data_tfrecord-* shard of an earlier ingestion, whatever its split names were."""
    for name in SIDE_FILES:
        path = _fs().join(out_dir, name)
        if _fs().exists(path):
            _fs().delete([path])
    pattern = _fs().join(out_dir, f"{SPLIT_PREFIX}*", "data_tfrecord-*")
    stale = [m.path for r in _fs().match([pattern]) for m in r.metadata_list]
    if stale:
        _fs().delete(stale)


# ------------------------------------------------------------------------------------ what may be replaced
def _is_own_entry(rel: str) -> bool:
    """A path (relative to an output folder, '/'-separated) that an ingestion writes there."""
    parts = rel.split("/")
    if len(parts) == 1:
        return parts[0] in SIDE_FILES
    return (len(parts) == 2 and parts[0].startswith(SPLIT_PREFIX) and parts[1].startswith("data_tfrecord-"))


def _foreign_entries(out_dir: str, limit: int = 3) -> tuple[bool, list[str]]:
    """(has a summary, up to `limit` entries under `out_dir` that no ingestion writes). Local: every
    file and folder (empty Split-* folders are ours); gs://: every object under the prefix."""
    foreign: list[str] = []
    has_summary = False
    if is_gcs(out_dir):
        from components.ingest.listing import _gcs_list
        for url, _, _ in _gcs_list(out_dir):
            rel = url[len(out_dir.rstrip("/")) + 1:]
            has_summary |= rel == SUMMARY_FILE
            if not _is_own_entry(rel):
                foreign.append(rel)
                if len(foreign) >= limit:
                    break
        return has_summary, foreign
    for dirpath, dirnames, filenames in os.walk(out_dir):
        rel_dir = os.path.relpath(dirpath, out_dir)
        for name in sorted(dirnames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel_dir != "." or not name.startswith(SPLIT_PREFIX) or os.path.islink(os.path.join(dirpath, name)):
                foreign.append(rel + "/")
        dirnames[:] = [d for d in dirnames if rel_dir == "." and d.startswith(SPLIT_PREFIX)
                       and not os.path.islink(os.path.join(dirpath, d))]
        for name in sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            has_summary |= rel == SUMMARY_FILE
            if not _is_own_entry(rel) or os.path.islink(os.path.join(dirpath, name)):
                foreign.append(rel)
        if len(foreign) >= limit:
            break
    return has_summary, foreign[:limit]


def _contains(outer: str, inner: str) -> bool:
    """`inner` equals `outer` or lies below it (normalised paths or gs:// URLs)."""
    outer, inner = outer.rstrip("/"), inner.rstrip("/")
    return inner == outer or inner.startswith(outer + "/") or (outer == "" and inner.startswith("/"))


def safe_output(out_dir: str, inputs: Sequence[str] = (), *, cwd: str | None = None,
                home: str | None = None) -> str:
    """The location an ingestion may write to, decided before any work; OutputError (one line)
    otherwise. An output is replaced as a whole, so it must be new, empty, or an earlier ingestion's
    output holding nothing else; it must not be, contain or lie inside any input (folders, manifests
    and the files they sit in, held-out sets, feedback files), nor be `/`, the home folder or the
    current folder (or one of its parents). A local symlink is resolved once: the output is written
    at its target and the link is kept."""
    if not out_dir or not out_dir.strip():
        raise OutputError("--output is empty: name a new or empty folder (or an earlier ingestion's output)")
    shown = out_dir
    if is_gcs(out_dir):
        from components.ingest.listing import _norm_gcs
        bucket, _, rest = out_dir[len("gs://"):].partition("/")
        if not bucket or not rest.strip("/"):
            raise OutputError(f"--output {shown!r} is a whole bucket (or names none): name a folder inside a bucket, "
                              "e.g. gs://BUCKET/ingested")
        target = _norm_gcs(out_dir).rstrip("/")
    else:
        check_output_location(out_dir)
        target = os.path.realpath(out_dir)
        cwd = os.path.realpath(cwd or os.getcwd())
        home = os.path.realpath(home or os.path.expanduser("~"))
        if target == "/":
            raise OutputError(f"--output {shown!r} is the root folder: name a new or empty folder")
        if target == home:
            raise OutputError(f"--output {shown!r} is the home folder: name a new or empty folder")
        if _contains(target, cwd):
            what = "the current folder" if target == cwd else f"a parent of the current folder ({cwd})"
            raise OutputError(f"--output {shown!r} is {what}, which would be replaced: name a new or empty folder")
    for inp in inputs:
        if not inp:
            continue
        if is_gcs(inp) != is_gcs(target):
            continue
        if is_gcs(inp):
            from components.ingest.listing import _norm_gcs
            src = _norm_gcs(inp).rstrip("/")
            src_is_folder = not src.lower().endswith((".csv", ".jsonl", ".json"))
        else:
            src = os.path.realpath(inp)
            src_is_folder = os.path.isdir(src)
        if _contains(target, src):
            what = "is" if src == target else "contains"
            raise OutputError(f"--output {shown!r} {what} the input {inp!r}, which replacing the output would "
                              "delete: choose a folder outside every input")
        if src_is_folder and _contains(src, target):
            raise OutputError(f"--output {shown!r} is inside the input folder {inp!r} (its shards would become "
                              "inputs of the next ingestion): choose a folder outside it")
    exists = _fs().exists(target + "/" + SUMMARY_FILE) if is_gcs(target) else os.path.isdir(target)
    if is_gcs(target) or exists:
        has_summary, foreign = _foreign_entries(target)
        if foreign:
            listed = ", ".join(repr(f) for f in foreign)
            kind = "an earlier ingestion's output with other files added" if has_summary else \
                "not an earlier ingestion's output"
            raise OutputError(f"--output {shown!r} is {kind} (it holds {listed}); an output folder is replaced as a "
                              "whole, so name a new or empty folder, or move those files away first")
    return target


# ------------------------------------------------------------------------------------ local checks
def check_output_location(out_dir: str) -> None:
    """One-line errors for an output that cannot be a folder (a file, or a path through a file)."""
    if is_gcs(out_dir):
        if out_dir.rstrip("/") == "gs:" or out_dir.count("/") < 3 and not out_dir.rstrip("/")[5:]:
            raise OutputError(f"--output {out_dir!r} names no bucket")
        return
    p = os.path.abspath(out_dir)
    if os.path.exists(p) and not os.path.isdir(p):
        raise OutputError(f"--output {out_dir!r} is a file, not a folder")
    parent = p
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise OutputError(f"--output {out_dir!r}: {parent!r} is a file, so no folder can be created under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"--output {out_dir!r}: no permission to write in {parent!r}")
    try:   # what the job will do first (its temporary sibling), tried now: /proc, read-only mounts
        os.rmdir(tempfile.mkdtemp(prefix=".synthdetect-probe-", dir=parent))
    except OSError as e:
        raise OutputError(f"--output {out_dir!r}: cannot create a folder in {parent!r} "
                          f"({e.strerror or type(e).__name__})") from None


# ------------------------------------------------------------------------------------ lock
class OutputLock:
    """`<output>.lock` next to the output, created exclusively (O_EXCL locally, a generation-0
    precondition on gs://). A lock left by a process that is gone (same host, PID not running) is
    taken over; any other holder makes the second writer fail with one line."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir.rstrip("/")
        self.path = self.out_dir + ".lock"
        self.info = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started": datetime.datetime.now().isoformat(timespec="seconds"), "token": uuid.uuid4().hex}
        self.took_over: dict | None = None

    def _holder_text(self, holder: dict) -> str:
        return (f"another ingestion is writing {self.out_dir} (pid {holder.get('pid')} on {holder.get('host')} "
                f"since {holder.get('started')}; lock file {self.path}). Wait for it, or delete the lock file "
                "if that process is gone")

    @staticmethod
    def _alive(holder: dict) -> bool:
        if holder.get("host") != socket.gethostname():
            return True  # cannot tell: assume it runs
        try:
            os.kill(int(holder.get("pid", -1)), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError, TypeError):
            return True
        return True

    def acquire(self) -> OutputLock:
        data = json.dumps(self.info).encode()
        if is_gcs(self.path):
            return self._acquire_gcs(data)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)) or ".", exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._read_local()
                if holder is not None and not self._alive(holder):
                    self.took_over = holder
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(self.path)
                    continue
                raise OutputError(self._holder_text(holder or {})) from None
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return self
        raise OutputError(self._holder_text(self._read_local() or {}))

    def _read_local(self) -> dict | None:
        try:
            with open(self.path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _blob(self):
        from components.ingest.listing import _gcs_client
        bucket, _, name = self.path[len("gs://"):].partition("/")
        return _gcs_client().bucket(bucket).blob(name)

    def _acquire_gcs(self, data: bytes) -> OutputLock:
        """Create-if-absent: the generation-0 precondition makes the upload atomic on GCS. The
        existence check before and the token check after add nothing on GCS itself but keep the lock
        working against emulators that ignore preconditions (gcp-storage-emulator does)."""
        from google.api_core.exceptions import PreconditionFailed
        blob = self._blob()

        def holder() -> dict:
            try:
                return json.loads(blob.download_as_bytes())
            except Exception:  # noqa: BLE001 - an unreadable lock file has no known holder
                return {}
        if blob.exists():
            raise OutputError(self._holder_text(holder()))
        try:
            blob.upload_from_string(data, if_generation_match=0)
        except PreconditionFailed:
            raise OutputError(self._holder_text(holder())) from None
        if holder().get("token") != self.info["token"]:
            raise OutputError(self._holder_text(holder()))
        return self

    def release(self) -> None:
        if is_gcs(self.path):
            with contextlib.suppress(Exception):
                blob = self._blob()
                if json.loads(blob.download_as_bytes()).get("token") == self.info["token"]:
                    blob.delete()
            return
        holder = self._read_local()
        if holder and holder.get("token") == self.info["token"]:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ------------------------------------------------------------------------------------ atomic output
def _siblings(out_dir: str, kind: str) -> list[str]:
    parent, name = os.path.split(out_dir.rstrip("/"))
    prefix = f".{name}.{kind}-"
    if is_gcs(out_dir):
        from components.ingest.listing import _gcs_list
        return sorted({u[len(parent) + 1:].split("/")[0] for u, _, _ in _gcs_list(f"{parent}/{prefix}", folder=False)})
    try:
        return sorted(n for n in os.listdir(parent or ".") if n.startswith(prefix))
    except OSError:
        return []


def _gcs_objects(prefix: str) -> list[str]:
    from components.ingest.listing import _gcs_list
    return [u for u, _, _ in _gcs_list(prefix)]


@contextlib.contextmanager
def atomic_output(out_dir: str) -> Iterator[str]:
    """Yields a temporary sibling folder to write into; on success it replaces `out_dir` (the
    previous output stays complete until then); on failure or interruption it is removed, and a
    later run removes what a killed run left. Call with the OutputLock held."""
    out_dir = out_dir.rstrip("/")
    parent, name = os.path.split(out_dir)
    for stale in _siblings(out_dir, "tmp") + _siblings(out_dir, "old"):   # left by a killed run
        remove_tree(f"{parent}/{stale}" if parent else stale)
    tmp = f"{parent}/.{name}.tmp-{uuid.uuid4().hex[:12]}" if parent else f".{name}.tmp-{uuid.uuid4().hex[:12]}"
    if not is_gcs(out_dir):
        os.makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        remove_tree(tmp)
        raise
    _replace(tmp, out_dir)


def remove_tree(path: str) -> None:
    """Deletes a folder (local) or every object under a prefix (gs://); absent is fine."""
    if is_gcs(path):
        objs = _gcs_objects(path)
        if objs:
            _fs().delete(objs)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _replace(tmp: str, out_dir: str) -> None:
    if not is_gcs(out_dir):
        parent, name = os.path.split(os.path.abspath(out_dir))
        old = os.path.join(parent, f".{name}.old-{uuid.uuid4().hex[:12]}")
        if os.path.exists(out_dir):
            os.rename(out_dir, old)
        os.rename(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
        return
    # gs:// has no rename: drop the old summary first (the old output stops claiming completeness),
    # then its objects, copy the new ones with the summary last, then drop the temporary prefix.
    old_summary = f"{out_dir}/{SUMMARY_FILE}"
    if _fs().exists(old_summary):
        _fs().delete([old_summary])
    old_objs = _gcs_objects(out_dir)
    if old_objs:
        _fs().delete(old_objs)
    new_objs = _gcs_objects(tmp)
    summary = [o for o in new_objs if o.endswith("/" + SUMMARY_FILE) and o.count("/") == tmp.count("/") + 1]
    rest = [o for o in new_objs if o not in summary]
    for batch in (rest, summary):
        if batch:
            _fs().copy(batch, [out_dir + o[len(tmp):] for o in batch])
    _fs().delete(new_objs)
