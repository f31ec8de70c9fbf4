"""A versioned model registry in a directory (local) or under a gs:// prefix.

Layout (one registry = one model line):

    <registry>/
      aliases.json             {"latest": "v3", "production": "v3"}   (replaced atomically)
      v1/ v2/ v3/              immutable versions; each is a SavedModel directory
        saved_model.pb  variables/  assets.extra/  ...   (the pushed SavedModel, loadable as is)
        model.json             metrics, thresholds, calibrated threshold, data fingerprint, run id,
                               timestamp, blessing reasons (written last: a version's commit marker)
      .staging-<pid>-<uuid>/   pushes in progress (never listed)

Local pushes are staged inside the registry and renamed into place (`rename(2)` of a directory is
atomic and fails if the target exists, which also settles races for a version number); aliases are
rewritten under a file lock via temp file + `os.replace`. A killed push leaves only a staging
directory, which listing ignores. On GCS, which has no rename, a version number is claimed with a
create-only object (`ifGenerationMatch=0`), the files are uploaded, and `model.json` is uploaded
last: a version without it is invisible. aliases.json is replaced with a generation precondition.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import re
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MODEL_JSON = "model.json"
CALIBRATION_PATH = "assets.extra/calibration.json"  # inside a version: the calibrated threshold
ALIASES_JSON = "aliases.json"
STAGING_PREFIX = ".staging-"
DEFAULT_ALIASES = ("latest", "production")
_VERSION_RE = re.compile(r"^v([1-9][0-9]*)$")
_ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
STALE_STAGING_S = 24 * 3600


class RegistryError(Exception):
    """A user-facing registry problem (unknown version or alias, missing registry); one line."""


def version_number(name: str) -> int | None:
    m = _VERSION_RE.match(name)
    return int(m.group(1)) if m else None


def _number(version: str) -> int:
    """version_number of a name that is a version (listed as one, or just committed)."""
    n = version_number(version)
    if n is None:
        raise RegistryError(f"not a version name: {version!r}")
    return n


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def gcs_client():
    """A google-cloud-storage client (anonymous against the GCS emulator of the tests); without
    credentials: components.gcloud.NoCredentials at once (one line)."""
    from components.gcloud import storage_client
    return storage_client()


def list_tree(location: str, skip: tuple[str, ...] = (), client=None) -> list[tuple[str, Any]]:
    """(relative name, blob) of every object under gs://bucket/prefix; each blob carries the
    generation it was listed at (downloading it fetches exactly that generation)."""
    client = client or gcs_client()
    bucket, _, prefix = location[len("gs://"):].partition("/")
    prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
    out = []
    for blob in client.list_blobs(client.bucket(bucket), prefix=prefix):
        rel = blob.name[len(prefix):]
        if rel and not rel.endswith("/") and rel not in skip:
            out.append((rel, blob))
    return out


def tree_generation(objects: list[tuple[str, Any]]) -> str:
    """A digest of the objects' names and generations: changes whenever any object under the prefix
    is replaced, added or removed (the cache key of a gs:// model, which a path alone is not)."""
    import hashlib
    h = hashlib.sha256()
    for rel, blob in sorted(objects, key=lambda o: o[0]):
        h.update(f"{rel}\0{blob.generation}\n".encode())
    return h.hexdigest()


def download_tree(location: str, dest: str | os.PathLike, skip: tuple[str, ...] = (), client=None,
                  objects: list[tuple[str, Any]] | None = None) -> Path:
    """Copies every object under gs://bucket/prefix (or the `objects` listed by `list_tree`, each at
    its listed generation) into the local folder `dest`, atomically (into a temporary sibling renamed
    into place), and keeps an existing `dest` as it is: `dest` must name one immutable content
    (a registry version, or a path plus `tree_generation`). `skip`: relative names left out."""
    dest = Path(dest)
    if dest.is_dir():
        return dest
    if objects is None:
        objects = list_tree(location, skip, client)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=dest.parent))  # same filesystem: rename works
    n = 0
    for rel, blob in objects:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        try:
            blob.download_to_filename(str(tmp / rel))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        n += 1
    if not n:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FileNotFoundError(f"no objects under {location}")
    try:
        os.rename(tmp, dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not dest.is_dir():  # not a concurrent download that won: a real failure
            raise
    return dest


def default_file_mode() -> int:
    """The mode `open()` would give a new file (0o666 minus the umask); `mkstemp` gives 0600, which
    would keep a file that replaces another one from everyone but its writer."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def parse_json_object(data: bytes | str, where: str) -> dict:
    """A JSON file that must hold an object (model.json, aliases.json) -> dict, or RegistryError naming
    the file and what is wrong with it (never a JSONDecodeError traceback)."""
    try:
        obj = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RegistryError(f"{where} is not valid JSON ({e}); restore it from a backup or fix it by hand") from None
    if not isinstance(obj, dict):
        raise RegistryError(f"{where} must hold a JSON object, found {type(obj).__name__}")
    return obj


def _check_aliases(aliases: dict, where: str) -> dict[str, str]:
    bad = [f"{a!r}: {v!r}" for a, v in aliases.items() if not isinstance(v, str) or version_number(v) is None]
    if bad:
        raise RegistryError(f"{where}: aliases must map to versions like \"v3\", found {', '.join(bad[:3])}")
    return aliases


def open_registry(location: str):
    """LocalRegistry for a directory, GcsRegistry for gs://bucket/prefix."""
    if location.startswith("gs://"):
        return GcsRegistry(location)
    if "://" in location:
        raise RegistryError(f"registry {location!r}: use a directory or gs://bucket/prefix "
                            "(vertex:// is a push destination, see components/registry/vertex.py)")
    if os.path.exists(location) and not os.path.isdir(location):
        raise RegistryError(f"registry {location!r} is not a directory (a registry is a folder or gs://bucket/prefix)")
    return LocalRegistry(location)


class _Base:
    location: str

    # -- subclasses implement
    def _version_names(self) -> list[str]:
        raise NotImplementedError

    def _read_json(self, rel: str) -> dict | None:
        raise NotImplementedError

    def versions(self) -> list[str]:
        """Committed versions (those with model.json), oldest first."""
        return sorted(self._version_names(), key=_number)

    def aliases(self) -> dict[str, str]:
        return _check_aliases(self._read_json(ALIASES_JSON) or {}, self._where(ALIASES_JSON))

    def _where(self, rel: str) -> str:
        return f"{self.location.rstrip('/')}/{rel}"

    def resolve(self, ref: str) -> str:
        """'v3', '3' or an alias ('production') -> 'v3'."""
        ref = ref.strip()
        if ref.isdigit():
            ref = f"v{int(ref)}"
        versions = self.versions()
        if version_number(ref) is not None:
            if ref not in versions:
                raise RegistryError(f"version {ref!r} not in registry {self.location!r} "
                                    f"(versions: {', '.join(versions) or 'none'})")
            return ref
        aliases = self.aliases()
        if ref not in aliases:
            raise RegistryError(f"no version or alias {ref!r} in registry {self.location!r} "
                                f"(aliases: {', '.join(f'{a}={v}' for a, v in sorted(aliases.items())) or 'none'})")
        if aliases[ref] not in versions:
            raise RegistryError(f"alias {ref!r} in registry {self.location!r} points at {aliases[ref]}, which is not "
                                f"there (a dangling alias; versions: {', '.join(versions) or 'none'}); point it at "
                                f"one with `registry promote VERSION --alias {ref}`")
        return aliases[ref]

    def model_json(self, ref: str) -> dict:
        version = self.resolve(ref)
        meta = self._read_json(f"{version}/{MODEL_JSON}")
        if meta is None:
            raise RegistryError(f"{version} in {self.location!r} has no {MODEL_JSON}")
        return meta

    def entries(self) -> list[dict]:
        """One summary per version (for `registry list`), oldest first, each with a `status`:
        `ok`; `unreadable` (its model.json cannot be read; `error` says why; the other versions are
        still listed); `dangling` (an alias points at a version that is not there)."""
        by_version: dict[str, list[str]] = {}
        for alias, v in sorted(self.aliases().items()):
            by_version.setdefault(v, []).append(alias)
        versions = self.versions()
        out = []
        for v in versions:
            status, error = "ok", None
            try:
                meta = self._read_json(f"{v}/{MODEL_JSON}") or {}
            except (RegistryError, OSError) as e:
                meta, status, error = {}, "unreadable", str(e)

            def get(*keys, meta=meta):   # a hand-edited model.json may hold anything at any level
                node = meta
                for k in keys:
                    node = node.get(k) if isinstance(node, dict) else None
                return node
            entry = {"version": v, "aliases": by_version.get(v, []), "status": status,
                     "created_at": get("created_at"), "run_id": get("pipeline", "run_id"),
                     "accuracy": get("metrics", "candidate", "binary_accuracy"),
                     "auc": get("metrics", "candidate", "auc"), "threshold": get("threshold"),
                     "data_fingerprint": get("data", "fingerprint")}
            out.append({**entry, "error": error} if error else entry)
        for v in set(by_version) - set(versions):
            out.append({"version": v, "aliases": by_version[v], "status": "dangling", "created_at": None,
                        "run_id": None, "accuracy": None, "auc": None, "threshold": None, "data_fingerprint": None,
                        "error": f"{', '.join(by_version[v])} -> {v}: no such version (dangling alias)"})
        return sorted(out, key=lambda e: _number(e["version"]))

    @staticmethod
    def _check_alias(alias: str) -> None:
        if not _ALIAS_RE.match(alias) or version_number(alias) is not None:
            raise RegistryError(f"invalid alias {alias!r} (lowercase letters, digits, - and _; not v<N>)")


# ----------------------------------------------------------------------------------------- local
class LocalRegistry(_Base):
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.location = str(root)

    def exists(self) -> bool:
        return self.root.is_dir()

    def _version_names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return [p.name for p in self.root.iterdir()
                if version_number(p.name) is not None and (p / MODEL_JSON).is_file()]

    def _read_json(self, rel: str) -> dict | None:
        p = self.root / rel
        if not p.is_file():
            return None
        return parse_json_object(p.read_bytes(), str(p))

    def local_dir(self, ref: str) -> Path:
        """The version's directory (a SavedModel plus model.json)."""
        return self.root / self.resolve(ref)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _write_aliases(self, aliases: dict[str, str]) -> None:
        """Temp file + os.replace (readers never see half a file), with the mode a new file gets
        under the umask (readable by whoever reads the registry; mkstemp alone gives 0600). On any
        failure (a full disk) the temp file is removed and aliases.json stays as it was."""
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=".aliases-", suffix=".tmp", dir=self.root)
            with os.fdopen(fd, "w") as f:
                os.fchmod(f.fileno(), default_file_mode())
                json.dump(dict(sorted(aliases.items())), f, indent=2)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.root / ALIASES_JSON)
            tmp = None
        except OSError as e:
            import errno
            why = "no space left on the device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
            raise RegistryError(f"cannot update {self.root / ALIASES_JSON}: {why}; the aliases are unchanged") from None
        finally:
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    def set_alias(self, alias: str, ref: str) -> str:
        """Point `alias` at a version (e.g. roll production back); returns the version."""
        self._check_alias(alias)
        version = self.resolve(ref)
        with self._locked():
            aliases = self.aliases()
            aliases[alias] = version
            self._write_aliases(aliases)
        return version

    def _clean_stale_staging(self) -> None:
        for p in self.root.glob(f"{STAGING_PREFIX}*"):
            with contextlib.suppress(OSError):
                if time.time() - p.stat().st_mtime > STALE_STAGING_S:
                    shutil.rmtree(p, ignore_errors=True)

    def push(self, saved_model_dir: str, metadata: dict, aliases=DEFAULT_ALIASES,
             extra_files: dict[str, str] | None = None,
             on_staged: Callable[[Path], None] | None = None) -> str:
        """Copy a SavedModel in as the next version with model.json; move `aliases` to it.

        `extra_files` ({relative path: text}) are written into the version (e.g.
        assets.extra/calibration.json). Returns the new version name."""
        for a in aliases:
            self._check_alias(a)
        src = Path(saved_model_dir)
        if not (src / "saved_model.pb").is_file():
            raise RegistryError(f"{saved_model_dir!r} is not a SavedModel directory (no saved_model.pb)")
        self.root.mkdir(parents=True, exist_ok=True)
        self._clean_stale_staging()
        staging = self.root / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            shutil.copytree(src, staging)
            for rel, text in (extra_files or {}).items():
                (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                (staging / rel).write_text(text)
            if on_staged:
                on_staged(staging)
            version = self._commit(staging, metadata)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        with self._locked():
            current = self.aliases()
            for a in aliases:  # never move an alias backwards past a concurrent, newer push
                cur = version_number(current.get(a, ""))
                if cur is None or cur < _number(version):
                    current[a] = version
            self._write_aliases(current)
        return version

    def _commit(self, staging: Path, metadata: dict) -> str:
        n = max([version_number(p.name) or 0 for p in self.root.iterdir()] + [0]) + 1
        for _ in range(1000):
            version = f"v{n}"
            meta = {**metadata, "version": version}
            (staging / MODEL_JSON).write_text(json.dumps(meta, indent=2, allow_nan=False) + "\n")
            _make_read_only(staging)
            try:
                os.rename(staging, self.root / version)  # atomic; fails if v<n> exists (non-empty)
                return version
            except OSError:
                if not (self.root / version).exists():
                    raise
                (staging / MODEL_JSON).chmod(0o644)
                n += 1
        raise RegistryError(f"could not allocate a version number in {self.location!r}")


def _make_read_only(root: Path) -> None:
    """Files of a version are read-only (immutability against accidents; directories stay
    writable so that a registry can still be deleted as a whole)."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            os.chmod(p, os.stat(p).st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


# ------------------------------------------------------------------------------------------- GCS
class GcsRegistry(_Base):
    def __init__(self, location: str):
        bucket, _, prefix = location[len("gs://"):].partition("/")
        if not bucket:
            raise RegistryError(f"registry {location!r}: no bucket name")
        self.location = location.rstrip("/")
        self.prefix = prefix.strip("/")
        self.client = gcs_client()
        self.bucket = self.client.bucket(bucket)

    def _key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def _names(self) -> list[str]:
        base = self._key("")
        return [b.name[len(base):] for b in self.client.list_blobs(self.bucket, prefix=base)]

    def _version_names(self) -> list[str]:
        return [n.split("/")[0] for n in self._names()
                if n.count("/") == 1 and n.endswith(f"/{MODEL_JSON}") and version_number(n.split("/")[0])]

    def _read_json(self, rel: str) -> dict | None:
        from google.api_core.exceptions import NotFound
        try:
            data = self.bucket.blob(self._key(rel)).download_as_bytes()
        except NotFound:
            return None
        return parse_json_object(data, self._where(rel))

    def exists(self) -> bool:
        return bool(self._names())

    def download(self, ref: str, dest: str | os.PathLike) -> Path:
        """Copy a version into `dest` (kept: versions are immutable, so a cached copy is valid)."""
        version = self.resolve(ref)
        return download_tree(f"{self.location}/{version}", dest, skip=(".claim",), client=self.client)

    def _update_aliases(self, change: Callable[[dict], dict]) -> None:
        from google.api_core.exceptions import NotFound, PreconditionFailed
        blob = self.bucket.blob(self._key(ALIASES_JSON))
        for _ in range(20):
            try:
                blob.reload()
                generation, current = blob.generation, _check_aliases(
                    parse_json_object(blob.download_as_bytes(), self._where(ALIASES_JSON)), self._where(ALIASES_JSON))
            except NotFound:
                generation, current = 0, {}
            try:
                blob.upload_from_string(json.dumps(change(dict(current)), indent=2, sort_keys=True),
                                        content_type="application/json", if_generation_match=generation)
                return
            except PreconditionFailed:
                time.sleep(0.2)
        raise RegistryError(f"could not update {ALIASES_JSON} in {self.location!r} (too much contention)")

    def set_alias(self, alias: str, ref: str) -> str:
        self._check_alias(alias)
        version = self.resolve(ref)
        self._update_aliases(lambda cur: {**cur, alias: version})
        return version

    def push(self, saved_model_dir: str, metadata: dict, aliases=DEFAULT_ALIASES,
             extra_files: dict[str, str] | None = None, on_staged=None) -> str:
        from google.api_core.exceptions import PreconditionFailed
        for a in aliases:
            self._check_alias(a)
        src = Path(saved_model_dir)
        if not (src / "saved_model.pb").is_file():
            raise RegistryError(f"{saved_model_dir!r} is not a SavedModel directory (no saved_model.pb)")
        taken = [version_number(n.split("/")[0]) or 0 for n in self._names()]
        n = max(taken + [0]) + 1
        while True:  # claim a number: create-only object, so two pushers never share one
            try:
                self.bucket.blob(self._key(f"v{n}/.claim")).upload_from_string(
                    now_iso(), if_generation_match=0)
                break
            except PreconditionFailed:
                n += 1
        version = f"v{n}"
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            self.bucket.blob(self._key(f"{version}/{path.relative_to(src).as_posix()}")).upload_from_filename(str(path))
        for rel, text in (extra_files or {}).items():
            self.bucket.blob(self._key(f"{version}/{rel}")).upload_from_string(text)
        if on_staged:
            on_staged(version)
        self.bucket.blob(self._key(f"{version}/{MODEL_JSON}")).upload_from_string(
            json.dumps({**metadata, "version": version}, indent=2, allow_nan=False) + "\n",
            content_type="application/json", if_generation_match=0)

        self.advance_aliases(version, aliases)
        return version

    def advance_aliases(self, version: str, aliases) -> None:
        """Point `aliases` at `version`, never moving one backwards past a newer concurrent push."""
        n = _number(version)

        def move(cur: dict) -> dict:
            for a in aliases:
                old = version_number(cur.get(a, ""))
                if old is None or old < n:
                    cur[a] = version
            return cur
        if aliases:
            self._update_aliases(move)
