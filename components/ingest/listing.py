"""Listing labelled inputs: folders, manifests, gs:// prefixes -> one `Listing` per run.

Policy (README "Ingestion: every file accounted for"):
* Folder layout `<root>/<real|synthesized>/[<source>/]**/<file>`; a folder holding `manifest.csv` or
  `manifest.jsonl` is read through the manifest.
* Only regular files are read. Anything else is recorded, never opened, and counted by the
  accounting invariant (`members.jsonl`):
  - quarantined `not_a_file`      FIFOs, sockets, devices
  - quarantined `too_large`       bigger than `ingest.max_file_bytes`
  - quarantined `outside_root`    a manifest row, or a symlink (file or folder), that resolves outside
                                  the input root (the manifest's folder for a manifest) and every
                                  `ingest.allowed_roots`
  - quarantined `unreadable_path` a manifest row naming a file that does not exist
  - skipped `hidden`              dot-files and dot-folders (a dot-folder is one entry, not entered)
  - skipped `documentation`       README/LICENSE files next to the images
  - skipped `symlink_loop`        a symlinked folder already being walked
  Symlinked folders inside the allowed roots are followed (their files keep the link's path).
* Sizes and versions (mtime in ns locally, the object generation on gs://) come from the same
  listing, so the ExampleGen fingerprint needs no per-file calls; a run lists its input once
  (`listing_session`).
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import posixpath
import stat
from collections.abc import Iterator, Sequence
from typing import Any

from components.ingest.archives import (ArchiveError, archive_kind, clean_name, list_members,
                                        split_archive_path, unsafe_name)
from components.ingest.archives import gcs_client as _gcs_client
from schemas.config import is_gcs

LABELS = ("real", "synthesized")                  # (negative, positive): the label_id is the index
LABEL_IDS = {label: k for k, label in enumerate(LABELS)}
MANIFEST_NAMES = ("manifest.csv", "manifest.jsonl")
DOC_NAMES = {"readme", "readme.md", "readme.txt", "readme.rst", "license", "license.txt", "license.md",
             "credits.md", "credits.txt", "notes.md"}
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


class InputError(Exception):
    """The input location is unusable (user mistake); one-line message."""


@dataclasses.dataclass(frozen=True, slots=True)   # slots: 200k of them in the launcher
class ImageInput:
    path: str
    label: str
    source: str = "unknown"
    generator: str = ""
    content: str = "unknown"
    size: int = -1           # bytes, from the listing (-1: unknown)
    version: str = ""        # mtime_ns locally, generation on gs://
    holdout: str = ""        # the held-out set it belongs to ("": the training input)
    archive: str = ""        # the archive holding it ("": a file); path = archive/member
    entry: tuple = ()        # where it is in the archive (archives.Entry.to_list())

    def to_list(self) -> list:
        return [self.path, self.label, self.source, self.generator, self.content, self.size, self.version,
                self.holdout, self.archive, list(self.entry)]

    @classmethod
    def from_list(cls, v: list) -> ImageInput:
        path, label, source, generator, content, size, version, holdout, archive, entry = v
        return cls(path, label, source, generator, content, size, version, holdout, archive, tuple(entry))

    @property
    def archive_version(self) -> str:
        """The archive's mtime_ns / generation (a member's version is '<that>:<archive size>')."""
        return self.version.split(":")[0]


@dataclasses.dataclass
class Listing:
    """What one run ingests: readable items plus inputs decided at listing time (never read)."""
    data_input: str
    items: list[ImageInput]
    rejected: list[dict]      # member-like records: path, label, source, status, reason, detail[, holdout]
    holdout_names: tuple[str, ...] = ()
    feedback: dict | None = None   # how curator feedback was applied (apply_feedback), None without any

    @property
    def n_inputs(self) -> int:
        return len(self.items) + len(self.rejected)

    def fingerprint(self, extra: str = "") -> str:
        """Changes when any input (path, label, metadata, size, version) or decision changes."""
        h = hashlib.sha256(extra.encode())
        for it in sorted(self.items, key=lambda i: i.path):
            h.update(f"{it.path}\t{it.label}\t{it.source}\t{it.generator}\t{it.content}\t{it.size}\t{it.version}"
                     f"\t{it.holdout}{chr(9) + json.dumps(list(it.entry)) if it.archive else ''}\n".encode())
        h.update(json.dumps(list(self.holdout_names)).encode())
        h.update(json.dumps(sorted(self.rejected, key=lambda r: r["path"]), sort_keys=True).encode())
        return f"synthdetect-inputs:{h.hexdigest()}"


def rejected_record(path: str, label: str, source: str, status: str, reason: str, detail: str = "",
                    generator: str = "", content: str = "") -> dict:
    return {"path": path, "label": label, "source": source, "generator": generator, "content": content,
            "status": status, "reason": reason, "detail": detail[:300]}


# --------------------------------------------------------------------------------------- archives
def archive_members(apath: str, version: str, size: int, max_file_bytes: int
                    ) -> Iterator[tuple[str, str, str, str, str, tuple]]:
    """(path, member name, status, reason, detail, entry) for every member of the archive at `apath`
    (status "" = an input to read; folders inside the archive are not members). ArchiveError if its
    index cannot be read. Decided from the index alone, never read: names escaping the archive
    (`outside_archive`), links and devices (`not_a_file`), encrypted members (`encrypted`), declared
    sizes past `max_file_bytes` (`too_large`), nested archives (skipped `nested_archive`), hidden and
    documentation files, a name listed twice (`duplicate_member`)."""
    entries = list_members(apath, version)
    seen: set[str] = set()
    member_version = f"{version}:{size}"
    for e in entries:
        if e.type == "dir":
            continue
        why = unsafe_name(e.name)
        if why:
            yield f"{apath}/{e.name}", e.name, "quarantined", "outside_archive", why, ()
            continue
        name = clean_name(e.name)
        path = f"{apath}/{name}"
        parts = name.split("/")
        if path in seen:    # never read; its path tells it from the first member of that name
            yield f"{path}#{e.index}", name, "quarantined", "duplicate_member", \
                f"member #{e.index} repeats the name of an earlier member", ()
            continue
        seen.add(path)
        if e.type != "file":
            yield path, name, "quarantined", "not_a_file", f"a {'link' if e.type == 'link' else 'special file'} " \
                                                           "inside the archive", ()
        elif any(p.startswith(".") or p == "__MACOSX" for p in parts):
            yield path, name, "skipped", "hidden", "", ()
        elif parts[-1].lower() in DOC_NAMES:
            yield path, name, "skipped", "documentation", "", ()
        elif archive_kind(name):
            yield path, name, "skipped", "nested_archive", "an archive inside an archive is not read", ()
        elif e.encrypted:
            yield path, name, "quarantined", "encrypted", "encrypted member (no password is ever used)", ()
        elif e.size > max_file_bytes:
            yield path, name, "quarantined", "too_large", f"declared {e.size} bytes > {max_file_bytes}", ()
        else:
            yield path, name, "", member_version, "", tuple(e.to_list())


def _expand_archive(apath: str, version: str, size: int, label: str, source: str, generator: str, content: str,
                    max_file_bytes: int, items: list, rejected: list) -> None:
    """The archive's members as inputs (label and metadata from the archive's place or manifest row);
    an unreadable archive is one quarantine row naming it."""
    try:
        for path, _, status, reason, detail, entry in archive_members(apath, version, size, max_file_bytes):
            if status:
                rejected.append(rejected_record(path, label, source, status, reason, detail, generator, content))
            else:
                items.append(ImageInput(path, label, source, generator, content, entry[4], reason,
                                        archive=apath, entry=entry))
    except ArchiveError as e:
        rejected.append(rejected_record(apath, label, source, "quarantined", "corrupt_archive", str(e),
                                        generator, content))


class _ArchiveIndex:
    """Manifest rows through archives: each archive listed once, members looked up by name."""

    def __init__(self, max_file_bytes: int):
        self._max = max_file_bytes
        self._index: dict[str, dict | str] = {}

    def members(self, apath: str, version: str, size: int) -> dict | str:
        if apath not in self._index:
            try:
                index: dict = {}
                for rec in archive_members(apath, version, size, self._max):
                    index.setdefault(rec[1], rec)      # a repeated name: the first member
                self._index[apath] = index
            except ArchiveError as e:
                self._index[apath] = str(e)
        return self._index[apath]

    def add_row(self, apath: str, member: str, version: str, size: int, label: str, source: str, generator: str,
                content: str, items: list, rejected: list) -> None:
        def reject(path, status, reason, detail=""):
            rejected.append(rejected_record(path, label, source, status, reason, detail, generator, content))
        index = self.members(apath, version, size)
        path = f"{apath}/{member}"
        if isinstance(index, str):
            reject(path, "quarantined", "corrupt_archive", f"{apath}: {index}")
            return
        rec = index.get(member) or index.get(clean_name(member))
        if rec is None:
            reject(path, "quarantined", "unreadable_path", f"no member {member!r} in {apath}")
            return
        path, _, status, reason, detail, entry = rec
        if status:
            reject(path, status, reason, detail)
        else:
            items.append(ImageInput(path, label, source, generator, content, entry[4], reason,
                                    archive=apath, entry=entry))


_MEMBER_INDEXES: dict[tuple[str, str], dict] = {}


def member_input(path: str, label: str = "real", source: str = "unknown", generator: str = "",
                 content: str = "unknown", max_file_bytes: int = 2 ** 62) -> ImageInput | None:
    """The input of an archive member named by its members.jsonl path (`…/part.zip/x.jpg`), to read
    it again (curation, re-decoding a duplicate); None if `path` does not go through a readable
    archive or names no readable member. Each archive's index is read once per process."""
    gcs = is_gcs(path)
    through = split_archive_path(path, (lambda p: True) if gcs else os.path.isfile)
    if not through:
        return None
    apath, member = through
    if gcs:
        version, size = "", 0
    else:
        st = os.stat(apath)
        version, size = str(st.st_mtime_ns), st.st_size
    key = (apath, version)
    if key not in _MEMBER_INDEXES:
        try:
            _MEMBER_INDEXES[key] = {rec[0]: rec for rec in archive_members(apath, version, size, max_file_bytes)}
        except ArchiveError:
            _MEMBER_INDEXES[key] = {}
    rec = _MEMBER_INDEXES[key].get(path)
    if rec is None or rec[2]:
        return None
    return ImageInput(path, label, source, generator, content, rec[5][4], rec[3], archive=apath, entry=rec[5])


# --------------------------------------------------------------------------------------- reading
def read_text(path: str) -> str:
    from apache_beam.io.filesystems import FileSystems
    try:
        with FileSystems.open(path, compression_type="uncompressed") as f:
            return f.read().decode("utf-8-sig")  # Excel writes a byte-order mark
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"cannot read {path}: {type(e).__name__}: {str(e).splitlines()[0][:160]}") from None


def _gcs_list(prefix_url: str, folder: bool = True) -> Iterator[tuple[str, int, str]]:
    """(gs://bucket/name, size, generation) for every object under a gs:// folder (or, with
    folder=False, every object whose name starts with the prefix): one paginated listing."""
    bucket, _, prefix = prefix_url[len("gs://"):].partition("/")
    if folder:
        prefix = prefix.rstrip("/") + "/" if prefix else ""
    for blob in _gcs_client().list_blobs(bucket, prefix=prefix):
        if not blob.name.endswith("/"):
            yield f"gs://{bucket}/{blob.name}", int(blob.size or 0), str(blob.generation or "")


# --------------------------------------------------------------------------------------- roots
def _norm_local(p: str) -> str:
    return os.path.realpath(p)


def _norm_gcs(p: str) -> str:
    bucket, _, rest = p[len("gs://"):].partition("/")
    return f"gs://{bucket}/" + posixpath.normpath("/" + rest).lstrip("/")


def _inside(path: str, roots: list[str]) -> bool:
    for r in roots:
        r = r.rstrip("/")
        if path == r or path.startswith(r + "/"):
            return True
    return False


def _allowed_roots(root: str, extra: tuple[str, ...] | list[str]) -> list[str]:
    out = []
    for r in [root, *extra]:
        out.append(_norm_gcs(r) if is_gcs(r) else _norm_local(r))
    return out


# --------------------------------------------------------------------------------------- manifests
def _manifest_rows(manifest: str) -> Iterator[tuple[str, dict]]:
    """(where, row) for every row: where is `line N` of the file (JSONL: the line; CSV: the line
    its record starts on, the header being line 1)."""
    text = read_text(manifest)
    if "\x00" in text:
        line_no = text[:text.index("\x00")].count("\n") + 1
        raise InputError(f"{manifest}: line {line_no} holds a NUL byte: not a text manifest (CSV or JSONL)")
    if manifest.endswith(".jsonl"):
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    raise InputError(f"{manifest}: line {n} is not valid JSON") from None
                yield f"line {n}", row
    else:
        reader = csv.DictReader(io.StringIO(text))
        try:
            start = 2
            for row in reader:
                yield f"line {start}", row
                start = reader.line_num + 1
        except csv.Error as e:
            raise InputError(f"{manifest}: line {reader.line_num}: not valid CSV ({e})") from None


# Manifest fields that become string features of the tf.Example. Numbers are written as their text
# (a source named 2024, a generator version 1.5); anything else is a mistake in the manifest.
META_FIELDS = ("source", "generator", "content")


def _text_field(manifest: str, where: str, row: dict, key: str, default: str) -> str:
    v = row.get(key)
    if v is None or v == "":
        return default
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise InputError(f"{manifest}: {where}: {key} must be text (or a number), got {type(v).__name__} {v!r:.60}")
    if isinstance(v, float) and not math.isfinite(v):
        raise InputError(f"{manifest}: {where}: {key} must be text (or a finite number), got {v!r}")
    return str(v)


def read_manifest(manifest: str, max_file_bytes: int, allowed_roots: tuple[str, ...] = ()) -> Listing:
    gcs = is_gcs(manifest)
    root = posixpath.dirname(manifest) if gcs else os.path.dirname(os.path.abspath(manifest))
    roots = _allowed_roots(root, allowed_roots)
    rows = []
    for where, row in _manifest_rows(manifest):
        if not isinstance(row, dict) or not row.get("path") or not row.get("label"):
            raise InputError(f"{manifest}: {where} needs 'path' and 'label'")
        if not isinstance(row["path"], str):
            raise InputError(f"{manifest}: {where}: path must be text, got {row['path']!r:.60}")
        label = str(row["label"]).strip().lower()
        if label not in LABELS:
            raise InputError(f"{manifest}: {where} has label {row['label']!r}; expected one of {', '.join(LABELS)}")
        source, generator, content = (_text_field(manifest, where, row, k, d)
                                      for k, d in zip(META_FIELDS, ("unknown", "", "unknown"), strict=True))
        rows.append((row["path"], label, source, generator, content))
    if not rows:
        raise InputError(f"{manifest}: no rows")
    gcs_index: dict[str, tuple[int, str]] = {}
    if any(is_gcs(p) or gcs for p, *_ in rows):  # one listing per gs:// root, no per-object calls
        for r in roots:
            if is_gcs(r):
                gcs_index.update({u: (s, g) for u, s, g in _gcs_list(r)})
    items: list[ImageInput] = []
    rejected: list[dict] = []
    archives = _ArchiveIndex(max_file_bytes)
    for rel, label, source, generator, content in rows:
        def reject(path, status, reason, detail="", *, label=label, source=source, generator=generator,
                   content=content):  # this row's fields, bound now
            rejected.append(rejected_record(path, label, source, status, reason, detail, generator, content))
        if is_gcs(rel) or gcs:
            path = rel if is_gcs(rel) else _norm_gcs(posixpath.join(root, rel))
            if not is_gcs(path):
                reject(rel, "quarantined", "outside_root", "a local path in a gs:// manifest")
                continue
            path = _norm_gcs(path)
            through = split_archive_path(path, gcs_index.__contains__) if path not in gcs_index else None
            if not _inside(path, roots):
                reject(path, "quarantined", "outside_root", f"not under {', '.join(roots)}")
            elif through:
                size, gen = gcs_index[through[0]]
                archives.add_row(through[0], through[1], gen, size, label, source, generator, content, items,
                                 rejected)
            elif path in gcs_index and archive_kind(path):
                _expand_archive(path, gcs_index[path][1], gcs_index[path][0], label, source, generator, content,
                                max_file_bytes, items, rejected)
            elif path not in gcs_index:
                reject(path, "quarantined", "unreadable_path", "no such object")
            elif gcs_index[path][0] > max_file_bytes:
                reject(path, "quarantined", "too_large", f"{gcs_index[path][0]} bytes > {max_file_bytes}")
            else:
                size, gen = gcs_index[path]
                items.append(ImageInput(path, label, source, generator, content, size, gen))
            continue
        path = rel if os.path.isabs(rel) else os.path.join(root, rel)
        path = os.path.normpath(path)
        if not _inside(_norm_local(path), roots):
            reject(path, "quarantined", "outside_root", f"resolves outside {', '.join(roots)}")
            continue
        through = split_archive_path(path) if not os.path.lexists(path) else None
        if through or (archive_kind(path) and os.path.isfile(path)):
            apath = through[0] if through else path
            if not _inside(_norm_local(apath), roots):
                reject(path, "quarantined", "outside_root", f"resolves outside {', '.join(roots)}")
                continue
            st = os.stat(apath)
            if through:
                archives.add_row(apath, through[1], str(st.st_mtime_ns), st.st_size, label, source, generator,
                                 content, items, rejected)
            else:
                _expand_archive(apath, str(st.st_mtime_ns), st.st_size, label, source, generator, content,
                                max_file_bytes, items, rejected)
            continue
        item_or_reason = _stat_local(path, label, source, generator, content, max_file_bytes)
        if isinstance(item_or_reason, ImageInput):
            items.append(item_or_reason)
        else:
            reject(path, "quarantined", *item_or_reason)
    return Listing(manifest, items, rejected)


def _stat_local(path: str, label: str, source: str, generator: str, content: str,
                max_file_bytes: int) -> ImageInput | tuple[str, str]:
    try:
        st = os.stat(path)  # follows a symlink to its target (already checked to be inside the roots)
    except OSError as e:
        return "unreadable_path", f"{type(e).__name__}: {e.strerror or e}"
    if not stat.S_ISREG(st.st_mode):
        return "not_a_file", _kind(st.st_mode)
    if st.st_size > max_file_bytes:
        return "too_large", f"{st.st_size} bytes > {max_file_bytes}"
    return ImageInput(path, label, source, generator, content, st.st_size, str(st.st_mtime_ns))


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


# --------------------------------------------------------------------------------------- folders
def _walk_local(root: str, roots: list[str]) -> Iterator[tuple[str, str, Any]]:
    """(relative path, kind, payload): kind 'file' (payload os.stat_result), 'reject'
    (payload (status, reason, detail)). Sorted, symlinked folders inside the roots followed once."""
    active: set[str] = set()

    def walk(dir_path: str, rel_dir: str) -> Iterator[tuple[str, str, Any]]:
        real = os.path.realpath(dir_path)
        try:
            entries = sorted(os.scandir(dir_path), key=lambda e: e.name)
        except OSError as err:   # not marked as being walked: reached again by another path, it is unreadable again
            yield rel_dir + "/", "reject", ("quarantined", "unreadable_path", f"{type(err).__name__}: {err.strerror}")
            return
        active.add(real)
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            if e.name.startswith("."):
                yield rel + ("/" if e.is_dir() else ""), "reject", ("skipped", "hidden", "")
                continue
            is_link = e.is_symlink()
            if is_link:
                target = os.path.realpath(e.path)
                if not _inside(target, roots):
                    yield rel, "reject", ("quarantined", "outside_root", f"symlink to {target}")
                    continue
            try:
                st = e.stat(follow_symlinks=True)
            except OSError as err:
                yield rel, "reject", ("quarantined", "unreadable_path", f"{type(err).__name__}: {err.strerror}")
                continue
            if stat.S_ISDIR(st.st_mode):
                if os.path.realpath(e.path) in active:
                    yield rel + "/", "reject", ("skipped", "symlink_loop", f"-> {os.path.realpath(e.path)}")
                    continue
                yield from walk(e.path, rel)
            else:
                yield rel, "file", st
        active.discard(real)

    yield from walk(root, "")


def list_inputs(input_base: str, max_file_bytes: int = 2 ** 62, allowed_roots: tuple[str, ...] = ()) -> Listing:
    """Every labelled input under `input_base`: a manifest file, a folder with a manifest, or a
    folder laid out as <root>/<real|synthesized>/[<source>/]**/<file>."""
    base = input_base.rstrip("/")
    if base.endswith((".csv", ".jsonl")):
        if not is_gcs(base) and not os.path.isfile(base):
            raise InputError(f"manifest {base!r} not found")
        return read_manifest(base, max_file_bytes, allowed_roots)
    if not is_gcs(base) and not os.path.isdir(base):
        raise InputError(f"input {base!r} is neither a folder nor a manifest (.csv/.jsonl)")
    roots = _allowed_roots(base, allowed_roots)
    if is_gcs(base):
        entries = []
        for url, size, gen in _gcs_list(base):
            rel = url[len(base) + 1:]
            entries.append((rel, size, gen))
        rels = {rel for rel, _, _ in entries}
        manifest = next((f"{base}/{name}" for name in MANIFEST_NAMES if name in rels), None)
        del rels
    else:   # the walk is streamed below (200k stat results never held at once)
        manifest = next((path for path in (os.path.join(base, name) for name in MANIFEST_NAMES)
                         if not os.path.basename(path).startswith(".") and os.path.isfile(path)
                         and _inside(os.path.realpath(path), roots)), None)
    if manifest:
        return read_manifest(manifest, max_file_bytes, allowed_roots)
    items: list[ImageInput] = []
    rejected: list[dict] = []
    unlabelled: list[str] = []

    places: dict[tuple[str, str], tuple[str, str]] = {}   # one (label, source) object per folder

    def place(rel: str) -> tuple[str, str] | None:
        parts = rel.rstrip("/").split("/")
        if parts[0].lower() not in LABELS or len(parts) < 2:
            return None
        where = (parts[0].lower(), parts[1] if len(parts) > 2 else "unknown")
        return places.setdefault(where, where)

    def add(rel: str, size: int, version: str, path: str) -> None:
        parts = rel.split("/")
        where = place(rel)
        name = parts[-1].lower()
        if any(p.startswith(".") for p in parts):
            rejected.append(rejected_record(path, where[0] if where else "", where[1] if where else "",
                                            "skipped", "hidden"))
        elif name in DOC_NAMES or (len(parts) == 1 and name in MANIFEST_NAMES):
            rejected.append(rejected_record(path, where[0] if where else "", where[1] if where else "",
                                            "skipped", "documentation"))
        elif where is None:
            if len(parts) >= 2 or os.path.splitext(rel)[1].lower() in IMAGE_EXTS:
                unlabelled.append(rel)  # an image (or a folder of files) without a label folder
            else:
                rejected.append(rejected_record(path, "", "", "skipped", "documentation", "not in a label folder"))
        elif archive_kind(name):   # an archive is read as a folder: its members, labelled by its place
            _expand_archive(path, version, size, where[0], where[1], "", "unknown", max_file_bytes, items, rejected)
        elif size > max_file_bytes:
            rejected.append(rejected_record(path, where[0], where[1], "quarantined", "too_large",
                                            f"{size} bytes > {max_file_bytes}"))
        else:
            items.append(ImageInput(path, where[0], where[1], size=size, version=version))

    if is_gcs(base):
        for rel, size, gen in entries:
            add(rel, size, gen, f"{base}/{rel}")
    else:
        for rel, kind, payload in _walk_local(base, roots):
            path = os.path.join(base, rel.rstrip("/"))
            if kind == "reject":
                status, reason, detail = payload
                where = place(rel)
                if where is None and reason not in ("hidden",) and not rel.endswith("/"):
                    unlabelled.append(rel)
                    continue
                rejected.append(rejected_record(path, where[0] if where else "", where[1] if where else "",
                                                status, reason, detail))
                continue
            st = payload
            if not stat.S_ISREG(st.st_mode):
                where = place(rel)
                if where is None:
                    unlabelled.append(rel)
                    continue
                rejected.append(rejected_record(path, where[0], where[1], "quarantined", "not_a_file",
                                                _kind(st.st_mode)))
                continue
            add(rel, st.st_size, str(st.st_mtime_ns), path)
    if unlabelled:
        tops = sorted({r.split("/")[0] + ("/" if "/" in r else "") for r in unlabelled})
        raise InputError(f"{len(unlabelled)} files under {base!r} are outside real/ and synthesized/ "
                         f"({', '.join(tops[:5])}{' …' if len(tops) > 5 else ''}): move them into a label folder "
                         "or list them in a manifest.csv")
    if not items and not any(r["status"] == "quarantined" for r in rejected):
        raise InputError(f"no images under {base!r}: expected {base}/real/... and {base}/synthesized/... "
                         "or a manifest.csv")
    return Listing(base, items, rejected)


def input_base_and_pattern(data_input: str) -> tuple[str, str]:
    """A folder is read by layout ('*'); a manifest file is named by the split pattern
    (ImageExampleGen's input_base and pattern)."""
    if data_input.endswith((".csv", ".jsonl")):
        return (data_input.rsplit("/", 1)[0] if is_gcs(data_input) else os.path.dirname(data_input),
                os.path.basename(data_input))
    return data_input.rstrip("/"), "*"


# --------------------------------------------------------------------------------------- feedback
def read_feedback(path: str) -> dict[str, dict]:
    """Curator decisions (`synthdetect curate export-feedback`): path -> {"action": "exclude"} or
    {"action": "relabel", "label": ...}, each with the file's `sha256` and `size` where known (the
    content the decision is about; see match_feedback)."""
    out = {}
    for n, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"feedback file {path}: line {n} is not valid JSON") from None
        action = rec.get("action") if isinstance(rec, dict) else None
        if not isinstance(rec, dict) or not rec.get("path") or action not in ("exclude", "relabel") or (
                action == "relabel" and rec.get("label") not in LABELS):
            raise InputError(f"feedback file {path}: line {n} needs path and action exclude|relabel "
                             f"(relabel with label {'|'.join(LABELS)})")
        sha = rec.get("sha256")
        if sha is not None and not (isinstance(sha, str) and len(sha) == 64
                                    and all(c in "0123456789abcdef" for c in sha)):
            raise InputError(f"feedback file {path}: line {n}: sha256 must be 64 lowercase hex digits")
        if rec.get("size") is not None and (not isinstance(rec["size"], int) or rec["size"] < 0):
            raise InputError(f"feedback file {path}: line {n}: size must be a number of bytes")
        out[rec["path"]] = rec
    return out


def _item_sha256(it: ImageInput, max_bytes: int) -> str | None:
    """sha256 of an input's bytes (a file, local or gs://, or an archive member); None if unreadable."""
    from apache_beam.io.filesystems import FileSystems

    from components.ingest.archives import entry_from_list, read_member
    try:
        if it.archive:
            data = read_member(it.archive, it.archive_version, entry_from_list(it.entry), max_bytes)
        else:
            with FileSystems.open(it.path, compression_type="uncompressed") as f:
                data = f.read()
    except Exception:  # noqa: BLE001 - an unreadable candidate is only not a match; the scan reports it
        return None
    return hashlib.sha256(data).hexdigest()


def match_feedback(items: Sequence[ImageInput], feedback: dict[str, dict], max_bytes: int = 1 << 62
                   ) -> tuple[dict[str, dict], dict]:
    """Which input each curator decision is about: {input path: decision}, and the counts.

    A decision names the file by content (`sha256`, from the dataset the curator tagged) with its path
    then as a hint: the input at that path if its bytes still have that sha256; else (the images were
    moved, cloned or renamed) an input of the same size (`size`) or, without one, the same file name,
    whose bytes have it. Decisions without a sha256 (files written before it was recorded) match by
    path alone. Only the few candidate files are read. Decisions that match no input are counted
    (`unmatched`, their paths in `unmatched_paths`): the caller warns."""
    by_path = {it.path: it for it in items}
    matched: dict[str, dict] = {}
    n_by_path = n_by_content = 0
    unmatched: list[str] = []
    hashes: dict[str, str | None] = {}

    def sha(it: ImageInput) -> str | None:
        if it.path not in hashes:
            hashes[it.path] = _item_sha256(it, max_bytes)
        return hashes[it.path]

    pending = []
    for path, rec in sorted(feedback.items()):
        it = by_path.get(path)
        if it is not None and (not rec.get("sha256") or sha(it) == rec["sha256"]):
            matched[path] = rec
            n_by_path += 1
        elif rec.get("sha256"):
            pending.append(rec)
        else:
            unmatched.append(path)
    if pending:
        by_size: dict[int, list[dict]] = {}
        by_name: dict[str, list[dict]] = {}
        for rec in pending:
            if isinstance(rec.get("size"), int):
                by_size.setdefault(rec["size"], []).append(rec)
            else:
                by_name.setdefault(posixpath.basename(rec["path"]), []).append(rec)
        found: set[str] = set()
        for it in items:
            if it.path in matched:
                continue
            candidates = by_size.get(it.size, []) + by_name.get(posixpath.basename(it.path), [])
            for rec in candidates:
                if rec["path"] not in found and sha(it) == rec["sha256"]:
                    matched[it.path] = rec
                    found.add(rec["path"])
                    n_by_content += 1
                    break
        unmatched += sorted(rec["path"] for rec in pending if rec["path"] not in found)
    return matched, {"entries": len(feedback), "by_path": n_by_path, "by_content": n_by_content,
                     "unmatched": len(unmatched), "unmatched_paths": unmatched}


def apply_feedback(listing: Listing, feedback: dict[str, dict], max_bytes: int = 1 << 62) -> Listing:
    """Excluded inputs become quarantined `curator_excluded`; relabels are applied. Decisions are
    matched to inputs by content (match_feedback); the counts are in the returned Listing's
    `feedback` (excluded, relabeled, matched by path / by content, unmatched)."""
    matched, stats = match_feedback(listing.items, feedback, max_bytes)
    kept, excluded, relabeled = [], [], 0
    for it in listing.items:
        rec = matched.get(it.path)
        if rec is None:
            kept.append(it)
        elif rec["action"] == "exclude":
            excluded.append(rejected_record(it.path, it.label, it.source, "quarantined", "curator_excluded",
                                            rec.get("note", ""), it.generator, it.content))
        else:
            relabeled += 1
            kept.append(dataclasses.replace(it, label=rec["label"]))
    stats.update(excluded=len(excluded), relabeled=relabeled)
    return Listing(listing.data_input, kept, listing.rejected + excluded, listing.holdout_names, stats)


def feedback_line(stats: dict) -> str:
    """One line about how a feedback file was applied (the ingest and run output print it)."""
    line = (f"curator feedback: {stats['entries']} decisions -> {stats['excluded']} excluded, {stats['relabeled']} "
            f"relabeled; matched {stats['by_path']} by path, {stats['by_content']} by content (moved or renamed)")
    if stats["unmatched"]:
        shown = ", ".join(stats["unmatched_paths"][:3]) + (", …" if stats["unmatched"] > 3 else "")
        line += f"; {stats['unmatched']} match no input ({shown})"
    return line


# --------------------------------------------------------------------------------------- one listing per run
_SESSION: dict | None = None


@contextlib.contextmanager
def listing_session():
    """Within this context, `resolve_inputs` lists each input once (the preflight check, the
    ExampleGen driver's fingerprint and the executor share it). Outside, every call lists anew."""
    global _SESSION
    outer, _SESSION = _SESSION, {}
    try:
        yield
    finally:
        _SESSION = outer


def resolve_inputs(data_input: str, opts) -> Listing:
    """The listing of `data_input` after curator feedback (`opts`: IngestConfig)."""
    key = (data_input, opts.max_file_bytes, tuple(opts.allowed_roots), opts.feedback)
    if _SESSION is not None and key in _SESSION:
        return _SESSION[key]
    listing = list_inputs(data_input, opts.max_file_bytes, tuple(opts.allowed_roots))
    if opts.feedback:
        listing = apply_feedback(listing, read_feedback(opts.feedback), opts.max_file_bytes)
    if _SESSION is not None:
        _SESSION[key] = listing
    return listing


def resolve_run_inputs(data_input: str, opts, holdout_sets: Sequence[tuple[str, str]] = (),
                       leave_out: dict | None = None) -> Listing:
    """The training input plus the held-out sets (evaluation.holdout_sets: (name, input) pairs, each
    listed like data.input) and, with evaluation.leave_out {field, value, name}, the training inputs
    whose `field` equals `value` (or one of a list of values) moved into a held-out set of their
    own. One Listing, every item tagged with its set ("" for training)."""
    main = resolve_inputs(data_input, opts)
    if not holdout_sets and not leave_out:
        return main
    items, rejected, names = list(main.items), list(main.rejected), []
    if leave_out:
        field, name = leave_out["field"], leave_out["name"]
        value = leave_out["value"]
        values = {str(v) for v in value} if isinstance(value, list) else {str(value)}
        names.append(name)
        items = [dataclasses.replace(it, holdout=name) if str(getattr(it, field)) in values else it for it in items]
        rejected = [{**r, "holdout": name} if str(r.get(field, "")) in values else r for r in rejected]
    for name, inp in holdout_sets:
        names.append(name)
        held = resolve_inputs(inp, opts)
        items += [dataclasses.replace(it, holdout=name) for it in held.items]
        rejected += [{**r, "holdout": name} for r in held.rejected]
    return Listing(data_input, items, rejected, tuple(names), main.feedback)


def inputs_fingerprint(data_input: str, opts, holdout_sets: Sequence[tuple[str, str]] = (),
                       leave_out: dict | None = None) -> str:
    extra = ""
    if opts.feedback:
        extra = hashlib.sha256(read_text(opts.feedback).encode()).hexdigest()
    return resolve_run_inputs(data_input, opts, holdout_sets, leave_out).fingerprint(extra)
