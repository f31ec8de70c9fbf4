"""Image archives read in place: `.zip`, `.tar`, `.tar.gz`/`.tgz`, local or on gs://. Never extracted.

Listing reads an archive's index once: a zip's central directory (`zipfile`, over a seekable reader:
only the end of the file is fetched), a tar's headers (`tarfile`; a local `.tar` is walked header to
header with seeks, a gs:// or gzipped one is streamed once). Every member becomes an `Entry` holding
where its bytes are, so the scan pass reads members by byte range, and a worker reads only its own:

* zip: (local header offset, compressed size, method, CRC, flags): one ranged read of the local
  header + data, inflated with zlib (stored and deflate) or `zipfile`'s own decompressors (bzip2,
  lzma), CRC-checked, never more than `ingest.max_file_bytes` once inflated (a zip bomb that lies
  about its size is stopped there);
* tar: (offset of the data, size): one ranged read;
* tar.gz: no random access in a gzip stream: the worker streams the archive from its start up to the
  last member it needs (decompressing is cheap next to decoding images).

Contiguous members of one archive in a work chunk are fetched with one read (`read_members`), which
is what makes gs:// archives fast: one request per span of members rather than per image.
"""
from __future__ import annotations

import dataclasses
import io
import os
import posixpath
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from typing import Literal, TypeVar

from schemas.config import is_gcs

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
SPAN_GAP = 64 * 1024          # members closer than this are fetched in one read
SPAN_MAX = 32 * 1024 * 1024   # largest single read
_ZIP_SLACK = 512              # the local header's extra field may differ from the central one
# A zip member's local file header (APPNOTE.TXT 4.3.7; the values zipfile uses internally, not public API):
# signature, then fixed fields, of which the file name length and the extra field length are the last two.
_ZIP_LOCAL_HEADER = "<4s2B4HL2L2H"
_ZIP_LOCAL_SIGNATURE = b"PK\003\004"
_ZIP_LOCAL_HEADER_SIZE = struct.calcsize(_ZIP_LOCAL_HEADER)   # 30
_ZIP_NAME_LENGTH, _ZIP_EXTRA_LENGTH = 10, 11                   # field indices in the unpacked header


def archive_kind(name: str) -> str | None:
    """'zip' | 'tar' | 'tgz' from the name, None if not an archive."""
    low = name.lower()
    if low.endswith(".zip"):
        return "zip"
    if low.endswith(".tar"):
        return "tar"
    if low.endswith((".tar.gz", ".tgz")):
        return "tgz"
    return None


class ArchiveError(Exception):
    """The archive cannot be read as a whole (its index is corrupt, truncated, unreadable)."""


class MemberError(Exception):
    """One member cannot be read: `reason` is the quarantine reason code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One member of an archive, as listed. `offset`: zip local header / tar data offset (in the
    decompressed stream for tgz); `csize`: compressed size (zip) or size; `index`: position in the
    archive (tgz streaming picks members by it)."""
    kind: str
    name: str
    offset: int
    csize: int
    size: int
    method: int = 0
    crc: int = 0
    flags: int = 0
    index: int = 0
    type: str = "file"        # file | dir | link | special

    def to_list(self) -> list:
        return [self.kind, self.name, self.offset, self.csize, self.size, self.method, self.crc, self.flags,
                self.index, self.type]

    @property
    def encrypted(self) -> bool:
        return self.kind == "zip" and bool(self.flags & 0x1)


def entry_from_list(v) -> Entry:
    return Entry(*v)


# ------------------------------------------------------------------------------------ byte access
_GCS: dict = {}


def gcs_client():
    """A google-cloud-storage client (anonymous on the emulator: STORAGE_EMULATOR_HOST; without
    credentials: components.gcloud.NoCredentials at once)."""
    from components.gcloud import storage_client
    return storage_client()


def _gcs_blob(url: str, version: str = ""):
    # one client per process and endpoint: STORAGE_EMULATOR_HOST may change within a process (tests
    # start an emulator each), and a client keeps the endpoint it was made with
    key = (os.getpid(), os.environ.get("STORAGE_EMULATOR_HOST"))
    client = _GCS.get(key)
    if client is None:
        client = _GCS[key] = gcs_client()
    bucket, _, name = url[len("gs://"):].partition("/")
    gen = int(version) if version.isdigit() else None
    return client.bucket(bucket).blob(name, generation=gen)   # pinned to the listed generation


def read_range(path: str, start: int, length: int, version: str = "") -> bytes:
    """`length` bytes of the file from `start` (fewer at its end)."""
    if length <= 0:
        return b""
    if is_gcs(path):
        return _gcs_blob(path, version).download_as_bytes(start=start, end=start + length - 1)
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(length)


def open_archive(path: str, version: str = ""):
    """A seekable binary reader of the whole archive (gs://: ranged requests as it is read)."""
    if is_gcs(path):
        return _gcs_blob(path, version).open("rb", chunk_size=1024 * 1024)
    return open(path, "rb")


# ------------------------------------------------------------------------------------ listing
def list_members(path: str, version: str = "") -> list[Entry]:
    """Every member of the archive at `path`, in archive order. ArchiveError if it cannot be read."""
    kind = archive_kind(path)
    if kind is None:   # callers pass archives only (they ask archive_kind first)
        raise ArchiveError("not an archive name (.zip, .tar, .tar.gz, .tgz)")
    try:
        with open_archive(path, version) as f:
            if kind == "zip":
                return _list_zip(f)
            return _list_tar(f, kind, streamed=kind == "tgz" or is_gcs(path))
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, zlib.error,
            struct.error, NotImplementedError) as e:
        raise ArchiveError(f"{type(e).__name__}: {str(e)[:200]}") from None
    except Exception as e:  # noqa: BLE001 - gs:// errors and others: the archive is unreadable
        raise ArchiveError(f"{type(e).__name__}: {str(e)[:200]}") from None


def _list_zip(f) -> list[Entry]:
    with zipfile.ZipFile(f) as z:
        out = []
        for k, zi in enumerate(z.infolist()):
            out.append(Entry("zip", zi.filename, zi.header_offset, zi.compress_size, zi.file_size,
                             zi.compress_type, zi.CRC, zi.flag_bits, k, "dir" if zi.is_dir() else "file"))
        return out


def _list_tar(f, kind: str, streamed: bool) -> list[Entry]:
    mode: Literal["r|gz", "r|", "r:"] = ("r|gz" if kind == "tgz" else "r|") if streamed else "r:"
    out = []
    with tarfile.open(fileobj=f, mode=mode) as t:
        for k, ti in enumerate(t):
            typ = "file" if ti.isreg() else "dir" if ti.isdir() else "link" if (ti.issym() or ti.islnk()) \
                else "special"
            out.append(Entry(kind, ti.name, ti.offset_data, ti.size, ti.size, index=k, type=typ))
    return out


def unsafe_name(name: str) -> str:
    """Why a member name escapes the archive ("" if it does not): absolute, a drive, `..`."""
    n = name.replace("\\", "/")
    if n.startswith("/"):
        return "absolute member name"
    if len(n) > 1 and n[1] == ":":
        return "member name with a drive letter"
    if ".." in n.split("/"):
        return "member name with '..'"
    return ""


def clean_name(name: str) -> str:
    """The member's path inside the archive as used in our paths (no leading './')."""
    return posixpath.normpath(name.replace("\\", "/")).lstrip("/") if name not in ("", ".") else name


# ------------------------------------------------------------------------------------ reading members
def _zip_data(buf: bytes, e: Entry, max_bytes: int) -> bytes:
    """The member's bytes from a buffer beginning at its local header (ValueError: buffer short)."""
    if len(buf) < _ZIP_LOCAL_HEADER_SIZE or buf[:4] != _ZIP_LOCAL_SIGNATURE:
        raise MemberError("corrupt_member", "no local file header at the listed offset")
    fields = struct.unpack(_ZIP_LOCAL_HEADER, buf[:_ZIP_LOCAL_HEADER_SIZE])
    start = _ZIP_LOCAL_HEADER_SIZE + fields[_ZIP_NAME_LENGTH] + fields[_ZIP_EXTRA_LENGTH]
    raw = buf[start:start + e.csize]
    if len(raw) < e.csize:
        raise ValueError("short")
    if e.method == zipfile.ZIP_STORED:
        data = raw
        if len(data) > max_bytes:
            raise MemberError("too_large", f"{len(data)} bytes > {max_bytes}")
    elif e.method == zipfile.ZIP_DEFLATED:
        d = zlib.decompressobj(-15)
        try:
            data = d.decompress(raw, max_bytes + 1)
        except zlib.error as err:
            raise MemberError("corrupt_member", f"deflate: {err}") from None
        if len(data) > max_bytes:
            raise MemberError("too_large", f"more than {max_bytes} bytes once decompressed "
                                           f"(declared {e.size})")
    else:
        zi = zipfile.ZipInfo(e.name)
        zi.compress_type, zi.compress_size, zi.file_size, zi.CRC, zi.flag_bits = \
            e.method, e.csize, e.size, e.crc, e.flags
        try:
            with zipfile.ZipExtFile(io.BytesIO(raw), "r", zi) as z:   # "r": as ZipFile.open passes it
                data = z.read(max_bytes + 1)
        except NotImplementedError as err:
            raise MemberError("unsupported_compression", str(err)) from None
        except Exception as err:  # noqa: BLE001 - any other decompression failure: a corrupt member
            raise MemberError("corrupt_member", f"{type(err).__name__}: {err}") from None
    if len(data) != e.size:
        raise MemberError("corrupt_member", f"{len(data)} bytes once decompressed, declared {e.size}")
    if zlib.crc32(data) != e.crc:
        raise MemberError("corrupt_member", "CRC-32 mismatch")
    return data


def member_span(e: Entry) -> tuple[int, int]:
    """The byte range [start, end) to fetch for a ranged member (zip: header + data + slack)."""
    if e.kind == "zip":
        return e.offset, e.offset + _ZIP_LOCAL_HEADER_SIZE + len(e.name.encode()) + e.csize + _ZIP_SLACK
    return e.offset, e.offset + e.size


def _from_buffer(path: str, version: str, e: Entry, buf: bytes, max_bytes: int) -> bytes:
    if e.kind == "zip":
        try:
            return _zip_data(buf, e, max_bytes)
        except ValueError:      # a local extra field longer than the slack: read the exact range
            start, end = member_span(e)
            more = read_range(path, start, end - start + 65536 + 2 * 65536, version)
            try:
                return _zip_data(more, e, max_bytes)
            except ValueError:
                raise MemberError("corrupt_member", "archive shorter than its directory says") from None
    data = buf[:e.size]
    if len(data) < e.size:
        raise MemberError("corrupt_member", "archive shorter than its headers say")
    return data


K = TypeVar("K")   # the caller's key of a member, handed back with its bytes


def read_members(path: str, version: str, entries: Iterable[tuple[K, Entry]], max_bytes: int
                 ) -> Iterator[tuple[K, bytes | MemberError]]:
    """(key, bytes or MemberError) for every (key, entry) of one archive, in archive order: ranged
    reads of spans of neighbouring members (zip, tar), or one stream up to the last member (tgz)."""
    todo = sorted(entries, key=lambda ke: ke[1].offset)
    if not todo:
        return
    if todo[0][1].kind == "tgz":
        yield from _stream_tgz(path, version, todo, max_bytes)
        return
    k = 0
    while k < len(todo):
        start, end = member_span(todo[k][1])
        j = k + 1
        while j < len(todo):
            next_start, next_end = member_span(todo[j][1])
            if next_start - end > SPAN_GAP or next_end - start > SPAN_MAX:
                break
            end = max(end, next_end)
            j += 1
        try:
            buf = read_range(path, start, end - start, version)
        except Exception as err:  # noqa: BLE001 - an unreadable range: its members are quarantined
            for key, _ in todo[k:j]:
                yield key, MemberError("unreadable_path", f"{type(err).__name__}: {str(err)[:200]}")
            k = j
            continue
        for key, e in todo[k:j]:
            try:
                yield key, _from_buffer(path, version, e, buf[e.offset - start:], max_bytes)
            except MemberError as err:
                yield key, err
        k = j


def _stream_tgz(path: str, version: str, todo: list[tuple[K, Entry]], max_bytes: int
                ) -> Iterator[tuple[K, bytes | MemberError]]:
    wanted = {e.index: (key, e) for key, e in todo}
    done = set()
    try:
        with open_archive(path, version) as f, tarfile.open(fileobj=f, mode="r|gz") as t:
            for k, ti in enumerate(t):
                if k in wanted:
                    key, e = wanted[k]
                    done.add(k)
                    if ti.name != e.name or ti.size != e.size:
                        yield key, MemberError("corrupt_member", "the archive changed since it was listed")
                    elif ti.size > max_bytes:
                        yield key, MemberError("too_large", f"{ti.size} bytes > {max_bytes}")
                    elif (member := t.extractfile(ti)) is None:   # listed as a file, now a link/dir
                        yield key, MemberError("corrupt_member", "the archive changed since it was listed")
                    else:
                        yield key, member.read()
                    if len(done) == len(wanted):
                        return
    except Exception as err:  # noqa: BLE001 - truncated/corrupt stream: the rest are quarantined
        for k, (key, _) in sorted(wanted.items()):
            if k not in done:
                yield key, MemberError("corrupt_member", f"{type(err).__name__}: {str(err)[:200]}")
        return
    for k, (key, _) in sorted(wanted.items()):
        if k not in done:
            yield key, MemberError("corrupt_member", "member not found when streaming the archive")


def read_member(path: str, version: str, e: Entry, max_bytes: int) -> bytes:
    """One member's bytes (MemberError if it cannot be read)."""
    for _, data in read_members(path, version, [(0, e)], max_bytes):
        if isinstance(data, MemberError):
            raise data
        return data
    raise MemberError("corrupt_member", "not read")


def split_archive_path(path: str, is_file=os.path.isfile) -> tuple[str, str] | None:
    """(archive, member) when `path` goes through an archive (`…/part-003.zip/4711 (6).jpg`): the
    first component with an archive suffix that `is_file` says is a file. None otherwise."""
    parts = path.split("/")
    for k in range(1, len(parts)):
        head = "/".join(parts[:k])
        if archive_kind(parts[k - 1]) and is_file(head):
            member = "/".join(parts[k:])
            return (head, member) if member else None
    return None
