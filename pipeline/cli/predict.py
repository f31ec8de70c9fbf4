"""`synthdetect predict`: score image files, folders and gs:// prefixes with a model from the
registry or a SavedModel, each image prepared exactly as ingestion prepared the training images."""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import TextIO

import click

from pipeline.cli.common import (EXIT_UNSCORED, UserError, config_option, load, progress_console, set_option,
                                 user_errors)
from pipeline.cli.registry import registry_option
from pipeline.cli.registry import registry_location as location_of


def chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _iter_paths(paths: tuple[str, ...], max_bytes: int) -> Iterator[tuple[str, object]]:
    """(display path, reader) per file: folders recursively, gs:// prefixes, plain files. A path
    that does not exist still yields one entry (it is reported as an error line)."""
    from components.ingest.archives import archive_kind
    from components.ingest.images import read_file
    from components.ingest.listing import DOC_NAMES, MANIFEST_NAMES

    def skip(name: str) -> bool:
        return name.startswith(".") or name.lower() in DOC_NAMES or name.lower() in MANIFEST_NAMES

    def local_reader(p: str):
        return lambda: read_file(p, max_bytes)   # never blocks on a FIFO, never reads a device
    for arg in paths:
        if archive_kind(arg) and (arg.startswith("gs://") or os.path.isfile(arg)):
            yield from _archive_items(arg, max_bytes)
        elif arg.startswith("gs://"):
            from components.registry.store import gcs_client
            bucket, _, prefix = arg[5:].partition("/")
            try:
                client = gcs_client()
                blobs = [b for b in client.list_blobs(bucket, prefix=prefix)
                         if not b.name.endswith("/") and not skip(b.name.rsplit("/", 1)[-1])]
            except Exception as e:  # noqa: BLE001 - one unreachable input is one error line, not the end
                yield arg, _Unreachable(f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
                continue
            if not blobs:
                yield arg, None
            for b in sorted(blobs, key=lambda b: b.name):
                if archive_kind(b.name):
                    yield from _archive_items(f"gs://{bucket}/{b.name}", max_bytes, str(b.generation or ""), b.size)
                else:
                    yield f"gs://{bucket}/{b.name}", b.download_as_bytes
        elif os.path.isdir(arg):
            for root, dirs, files in os.walk(arg):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if archive_kind(name):
                        yield from _archive_items(os.path.join(root, name), max_bytes)
                    elif not skip(name):
                        yield os.path.join(root, name), local_reader(os.path.join(root, name))
        else:
            yield arg, local_reader(arg) if os.path.isfile(arg) else None


class _Unreachable(str):
    """In place of a reader: a gs:// prefix that could not be listed (why)."""


def _archive_items(path: str, max_bytes: int, version: str | None = None, size: int | None = None
                   ) -> Iterator[tuple[str, object]]:
    """(archive/member, reader) for every image in an archive, read by range, never extracted;
    members refused from the archive's index (encrypted, too large, escaping names, nested
    archives) and an unreadable archive each give one reader that raises their reason."""
    from components.ingest.archives import ArchiveError, MemberError, entry_from_list, read_member
    from components.ingest.images import ReadRefused
    from components.ingest.listing import archive_members

    def refused(reason: str, detail: str):
        def read():
            raise ReadRefused(reason, detail)
        return read

    def member_reader(entry: tuple, archive_version: str):
        def read():
            try:
                return read_member(path, archive_version, entry_from_list(entry), max_bytes)
            except MemberError as e:
                raise ReadRefused(e.reason, e.detail) from None
        return read
    if version is None:
        st = os.stat(path)
        version, size = str(st.st_mtime_ns), st.st_size
    try:
        for member, _, status, reason, detail, entry in archive_members(path, version, size or 0, max_bytes):
            if status == "skipped" and reason in ("hidden", "documentation"):
                continue
            yield member, (refused(reason, detail) if status else member_reader(entry, version))
    except ArchiveError as e:
        yield path, refused("corrupt_archive", str(e))


Error = tuple[str, str]   # (code, detail): one code per kind of failure, the message beside it


def _prepare(path: str, reader, opts) -> tuple[bytes | None, Error | None]:
    """The bytes the model sees (decoded and re-encoded exactly as ingestion does), or an error
    (code, detail): the codes are ingestion's quarantine reasons (not_an_image, truncated_jpeg, …)
    plus not_found, unreachable, unreadable_path and model_error."""
    from components.ingest.images import decode_file
    from components.ingest.listing import ImageInput
    if reader is None:
        return None, ("not_found", "")
    if isinstance(reader, _Unreachable):
        return None, ("unreachable", str(reader))
    from components.ingest.images import ReadRefused
    try:
        data = reader()
    except ReadRefused as e:
        return None, (e.reason, e.detail or "")
    except Exception as e:  # noqa: BLE001 - reported per file
        return None, ("unreadable_path", f"{type(e).__name__}: {e}")
    status, out = decode_file(ImageInput(path, "real"), opts, data)
    if status != "ok":
        return None, (out["reason"], out.get("detail") or "")
    example = getattr(out, "example", out)
    return example.features.feature["image_raw"].bytes_list.value[0], None


def _finite_threshold(ctx, param, value: float | None) -> float | None:
    """FloatRange lets `nan` through (every comparison with it is false); a NaN threshold labels
    nothing and cannot be written as JSON."""
    if value is not None and not math.isfinite(value):
        raise UserError(f"--threshold must be a number in [0, 1], got {value}")
    return value


@click.command()
@click.option("--model", "model_ref", required=True, metavar="registry:REF|DIR",
              help="registry:production, registry:v3, or a SavedModel directory (or model artifact; local or gs://)")
@click.argument("paths", nargs=-1, required=True, metavar="PATH…")
@registry_option
@config_option
@set_option
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1, 4096))
@click.option("--threshold", type=click.FloatRange(0, 1), default=None, callback=_finite_threshold,
              help="decision threshold (default: the model's calibrated one, else 0.5)")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="write the JSON lines here instead of stdout")
def predict(model_ref, paths, registry_location, config, sets, batch_size, threshold, out_path) -> None:
    """Score image files, folders (recursively), archives (.zip, .tar, .tar.gz: every member, read in
    place, named archive/member) and gs:// prefixes; one JSON line per image:
    {path, p_synthesized, label, threshold, model_version}; for a file that cannot be scored, `error`
    holds one code per kind of failure (not_found, not_an_image, truncated_jpeg, too_large,
    unreachable, model_error, …) and `error_detail` the message.

    Exits 0 when every input was scored, {unscored} when any could not be (all lines are still written)."""
    from schemas.config import IngestConfig
    from components.scoring.models import ModelError, resolve_model
    location = location_of(registry_location, config, sets) if model_ref.startswith("registry:") else None
    with user_errors(ModelError):
        model = resolve_model(model_ref, location)
    ingest = model.serving_ingest
    if ingest is None:  # a bare SavedModel: prepare images as the config's ingestion would
        try:
            ingest = load(config, sets).ingest.model_dump()
        except UserError:
            ingest = {}
    try:
        opts = IngestConfig.from_dict(ingest)
    except (TypeError, ValueError) as e:
        from pydantic import ValidationError

        from schemas.config import _one_line
        why = _one_line(e) if isinstance(e, ValidationError) else f"{type(e).__name__}: {e}"
        raise UserError(f"--model {model_ref!r}: the ingestion options in its model.json are not usable "
                        f"({why})") from None
    threshold = threshold if threshold is not None else (model.threshold if model.threshold is not None else 0.5)
    version = model.version

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from components.scoring.scorer import ModelLoadError, Scorer
    from pipeline.logs import route_library_logs
    route_library_logs(None)
    with user_errors(ModelLoadError):
        score = Scorer(model.path)
    route_library_logs(None)
    items = list(_iter_paths(paths, opts.max_file_bytes))
    if not items:
        raise UserError(f"nothing to score: no files under {', '.join(paths)} (README and manifest files are "
                        "skipped)")
    # --out is written to a temporary file beside it and renamed into place at the end: a failure
    # (a full disk, Ctrl-C) never leaves a file with a cut last line, and an earlier file stays as it was
    tmp_path: str | None = None
    out: TextIO
    if out_path:
        try:
            fd, tmp_path = tempfile.mkstemp(prefix=f".{os.path.basename(out_path)}-", suffix=".tmp",
                                            dir=os.path.dirname(os.path.abspath(out_path)))
        except OSError as e:
            raise UserError(f"--out {out_path}: cannot write there ({e.strerror or e})") from None
        from components.registry.store import default_file_mode
        os.fchmod(fd, default_file_mode())
        out = os.fdopen(fd, "w")
    else:
        out = sys.stdout
    n_ok = n_err = 0

    def emit(path: str, p: float | None, error: Error | None) -> None:
        if p is not None and not math.isfinite(float(p)):   # valid JSON only: never a bare NaN
            error = error or ("model_error", f"non-finite score {float(p)}")
            p = None
        row = {"path": path, "p_synthesized": None if p is None else round(float(p), 6),
               "label": None if p is None else ("synthesized" if p >= threshold else "real"),
               "threshold": threshold, "model_version": version}
        if error:
            row["error"] = error[0]
            if error[1]:
                row["error_detail"] = error[1]
        out.write(json.dumps(row, allow_nan=False) + "\n")
    try:
        with Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=progress_console, transient=True) as progress:
            task = progress.add_task("scoring", total=len(items))
            for batch in chunks(items, batch_size):
                prepared = [(path, *_prepare(path, reader, opts)) for path, reader in batch]
                good = [(path, data) for path, data, err in prepared if data is not None]
                scores: dict[str, float | Error] = {}
                try:
                    scores = dict(zip([p for p, _ in good], score([d for _, d in good]), strict=True)) if good else {}
                except Exception:  # noqa: BLE001 - one bad image must not sink the batch: retry one by one
                    for path, data in good:
                        try:
                            scores[path] = float(score([data])[0])
                        except Exception as e:  # noqa: BLE001 - reported for this file
                            scores[path] = ("model_error", f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
                for path, _data, err in prepared:
                    s = scores.get(path) if err is None else None
                    if isinstance(s, tuple):
                        err, s = s, None
                    emit(path, s, err)
                    n_ok, n_err = n_ok + (err is None), n_err + (err is not None)
                out.flush()
                progress.advance(task, len(batch))
        if out_path:
            os.fsync(out.fileno())
            out.close()
            assert tmp_path is not None   # made with out_path above
            os.replace(tmp_path, out_path)
            tmp_path = None
    except OSError as e:
        if not out_path:
            raise
        import errno
        why = "no space left on the device" if e.errno == errno.ENOSPC else (e.strerror or str(e))
        raise UserError(f"--out {out_path}: {why}; nothing written") from None
    finally:
        if tmp_path:
            try:
                out.close()
            except OSError:
                pass
            try:
                os.unlink(tmp_path)
            except OSError:
                pass
    progress_console.print(f"scored {n_ok} files, {n_err} errors; model {version}, threshold {threshold:.4f}")
    if n_err:
        progress_console.print(f"{n_err} of {n_ok + n_err} inputs could not be scored (exit {EXIT_UNSCORED})")
        raise click.exceptions.Exit(EXIT_UNSCORED)


predict.help = (predict.help or "").replace("{unscored}", str(EXIT_UNSCORED))
