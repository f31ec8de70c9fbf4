"""`synthdetect registry list|show|promote` and `synthdetect predict` (batch scoring).

Attached to the `synthdetect` group on import (pipeline/cli.py imports this module)."""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Iterator

import click

from pipeline.cli import UserError, _load, config_option, main, set_option

registry_option = click.option("--registry", "registry_location", default=None, metavar="DIR|gs://…",
                               help="registry location (default: the config's `registry`)")


def _registry(location: str | None, config: str, sets: tuple[str, ...]):
    from components.registry.store import RegistryError, open_registry
    location = location or _load(config, sets).registry
    try:
        return open_registry(location)
    except RegistryError as e:
        raise UserError(str(e)) from None


@main.group()
def registry() -> None:
    """Versions in the model registry (v1, v2, … and the aliases latest / production)."""


@registry.command("list")
@registry_option
@config_option
@set_option
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def registry_list(registry_location, config, sets, as_json) -> None:
    """List the registry's versions, newest last, with their aliases and headline metrics."""
    from rich.table import Table

    from pipeline.cli import console
    from components.registry.store import RegistryError
    reg = _registry(registry_location, config, sets)
    try:
        entries, aliases = reg.entries(), reg.aliases()
    except RegistryError as e:
        raise UserError(str(e)) from None
    if as_json:
        click.echo(json.dumps({"registry": reg.location, "aliases": aliases, "versions": entries}, indent=2))
        return
    if not entries:
        console.print(f"registry {reg.location}: no versions")
        return
    t = Table(title=f"registry {reg.location}")
    for col in ("version", "aliases", "created", "run", "accuracy", "AUC", "threshold", "data"):
        t.add_column(col, justify="right" if col in ("accuracy", "AUC", "threshold") else "left")

    def num(x):
        return "-" if x is None else f"{x:.3f}"
    for e in entries:
        t.add_row(e["version"], ",".join(e["aliases"]), e["created_at"] or "-", e["run_id"] or "-",
                  num(e["accuracy"]), num(e["auc"]), num(e["threshold"]),
                  (e["data_fingerprint"] or "-").removeprefix("sha256:")[:12])
    console.print(t)


@registry.command("show")
@click.argument("ref", metavar="VERSION|ALIAS")
@registry_option
@config_option
@set_option
@click.option("--json", "as_json", is_flag=True, help="print model.json as is")
def registry_show(ref, registry_location, config, sets, as_json) -> None:
    """Show one version's model.json (metrics, thresholds, calibration, blessing reasons)."""
    from components.registry.store import RegistryError
    from pipeline.cli import console
    reg = _registry(registry_location, config, sets)
    try:
        meta = reg.model_json(ref)
        all_aliases = reg.aliases()
    except RegistryError as e:
        raise UserError(str(e)) from None
    if as_json:
        click.echo(json.dumps(meta, indent=2))
        return
    try:
        _print_model_json(meta, all_aliases, reg.location, console)
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # a hand-edited model.json
        raise UserError(f"{meta.get('version', ref)}/model.json in {reg.location!r} has unexpected content "
                        f"({type(e).__name__}: {e}); `registry show {ref} --json` prints it as is") from None


def _print_model_json(meta: dict, all_aliases: dict, location: str, console) -> None:
    aliases = [a for a, v in sorted(all_aliases.items()) if v == meta.get("version")]
    console.print(f"[bold]{meta['version']}[/] {('(' + ', '.join(aliases) + ')') if aliases else ''} "
                  f"of {location}: {meta.get('model_name')}, created {meta.get('created_at')}, "
                  f"run {(meta.get('pipeline') or {}).get('run_id')}")
    for model, m in (meta.get("metrics") or {}).items():
        console.print(f"  {model:9}: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()
                                                    if isinstance(v, (int, float)) and k != "example_count")
                      + f" (n={m.get('example_count', 0):.0f})")
    c = meta.get("calibration") or {}
    if c:
        console.print(f"  threshold {c['threshold']:.4f} for FPR <= {c['target_fpr']:g} on real images: "
                      f"FPR {c['fpr']:.3f}, TPR {c['tpr']:.3f} (at 0.5: FPR {c['fpr_at_0.5']:.3f}, "
                      f"TPR {c['tpr_at_0.5']:.3f}; {c['n_real']} real images)")
    rob = meta.get("robustness") or {}
    if rob.get("perturbations"):
        console.print("  robustness (accuracy drop): " + ", ".join(
            f"{k} {v['accuracy_drop']:+.3f}" for k, v in rob["perturbations"].items()))
    console.print(f"  data {(meta.get('data') or {}).get('fingerprint')}")
    console.print("  blessed: " + "; ".join((meta.get("blessing") or {}).get("reasons", [])))


@registry.command("promote")
@click.argument("ref", metavar="VERSION|ALIAS")
@click.option("--alias", default="production", show_default=True, help="alias to move")
@registry_option
@config_option
@set_option
def registry_promote(ref, alias, registry_location, config, sets) -> None:
    """Point an alias at a version (e.g. roll production back to v2); atomic."""
    from components.registry.store import RegistryError
    reg = _registry(registry_location, config, sets)
    try:
        version = reg.set_alias(alias, ref)
    except RegistryError as e:
        raise UserError(str(e)) from None
    click.echo(f"{alias} -> {version}")


# ------------------------------------------------------------------------------------- predict
def _cache_dir() -> Path:
    return Path(os.environ.get("SYNTHDETECT_CACHE", Path.home() / ".cache" / "synthdetect"))


def _resolve_model(ref: str, registry_location: str | None, config: str, sets) -> tuple[str, dict, str]:
    """--model value -> (SavedModel dir, model.json or {}, version label)."""
    from components.registry.store import GcsRegistry, RegistryError, parse_json_object
    if ref.startswith("registry:"):
        reg = _registry(registry_location, config, sets)
        try:
            version = reg.resolve(ref.removeprefix("registry:"))
            meta = reg.model_json(version)
            if isinstance(reg, GcsRegistry):
                key = hashlib.sha256(reg.location.encode()).hexdigest()[:16]
                path = str(reg.download(version, _cache_dir() / "registry" / key / version))
            else:
                path = str(reg.local_dir(version))
        except RegistryError as e:
            raise UserError(str(e)) from None
        _check_model_meta(meta, f"{version}/model.json in {reg.location!r}")
        return path, meta, version
    path = Path(ref)
    if not path.exists():
        raise UserError(f"--model {ref!r}: no such SavedModel directory (or use registry:production, registry:v3)")
    meta = {}
    for candidate in (path / "model.json", path / "assets.extra" / "calibration.json",
                      path / "Format-Serving" / "assets.extra" / "calibration.json"):
        if candidate.is_file():
            try:
                data = parse_json_object(candidate.read_bytes(), str(candidate))
            except RegistryError as e:
                raise UserError(f"--model {ref!r}: {e}") from None
            meta = data if candidate.name == "model.json" else {"threshold": data.get("threshold")}
            _check_model_meta(meta, f"--model {ref!r}: {candidate}")
            break
    return str(path), meta, str(meta.get("version") or path)


def _check_model_meta(meta: dict, where: str) -> None:
    """The fields predict uses: a threshold in [0, 1] and the ingestion options for serving."""
    t = meta.get("threshold")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1):
        raise UserError(f"{where}: \"threshold\" must be a number in [0, 1], found {t!r}")
    serving = meta.get("serving")
    ingest = serving.get("ingest") if isinstance(serving, dict) else None
    if (serving is not None and not isinstance(serving, dict)) or (ingest is not None and not isinstance(ingest, dict)):
        raise UserError(f"{where}: \"serving\" must be {{\"ingest\": {{…}}}}, found {serving!r:.80}")


def _iter_paths(paths: tuple[str, ...], max_bytes: int) -> Iterator[tuple[str, object]]:
    """(display path, reader) per file: folders recursively, gs:// prefixes, plain files. A path
    that does not exist still yields one entry (it is reported as an error line)."""
    from components.ingest.images import read_file
    from components.ingest.listing import DOC_NAMES, MANIFEST_NAMES

    def skip(name: str) -> bool:
        return name.startswith(".") or name.lower() in DOC_NAMES or name.lower() in MANIFEST_NAMES

    def local_reader(p: str):
        return lambda: read_file(p, max_bytes)   # never blocks on a FIFO, never reads a device
    for arg in paths:
        if arg.startswith("gs://"):
            from google.cloud import storage
            bucket, _, prefix = arg[5:].partition("/")
            client = storage.Client.create_anonymous_client() if os.environ.get("STORAGE_EMULATOR_HOST") \
                else storage.Client()
            blobs = [b for b in client.list_blobs(bucket, prefix=prefix)
                     if not b.name.endswith("/") and not skip(b.name.rsplit("/", 1)[-1])]
            if not blobs:
                yield arg, None
            for b in sorted(blobs, key=lambda b: b.name):
                yield f"gs://{bucket}/{b.name}", b.download_as_bytes
        elif os.path.isdir(arg):
            for root, dirs, files in os.walk(arg):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not skip(name):
                        yield os.path.join(root, name), local_reader(os.path.join(root, name))
        else:
            yield arg, local_reader(arg) if os.path.isfile(arg) else None


def _prepare(path: str, reader, opts) -> tuple[bytes | None, str | None]:
    """The bytes the model sees (decoded and re-encoded exactly as ingestion does), or an error."""
    from components.ingest.images import ImageInput, decode_file
    if reader is None:
        return None, "not_found"
    from components.ingest.images import ReadRefused
    try:
        data = reader()
    except ReadRefused as e:
        return None, e.reason + (f": {e.detail}" if e.detail else "")
    except Exception as e:  # noqa: BLE001 - reported per file
        return None, f"unreadable_path: {type(e).__name__}: {e}"
    status, out = decode_file(ImageInput(path, "real"), opts, data)
    if status != "ok":
        return None, out["reason"] + (f": {out['detail']}" if out.get("detail") else "")
    example = getattr(out, "example", out)
    return example.features.feature["image_raw"].bytes_list.value[0], None


@main.command()
@click.option("--model", "model_ref", required=True, metavar="registry:REF|DIR",
              help="registry:production, registry:v3, or a SavedModel directory")
@click.argument("paths", nargs=-1, required=True, metavar="PATH…")
@registry_option
@config_option
@set_option
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1, 4096))
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="decision threshold (default: the model's calibrated one, else 0.5)")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="write the JSON lines here instead of stdout")
def predict(model_ref, paths, registry_location, config, sets, batch_size, threshold, out_path) -> None:
    """Score image files, folders (recursively) and gs:// prefixes; one JSON line per file:
    {path, p_synthesized, label, threshold, model_version}, or an `error` for a bad file."""
    from components.ingest.images import IngestOptions
    model_dir, meta, version = _resolve_model(model_ref, registry_location, config, sets)
    ingest = (meta.get("serving") or {}).get("ingest")
    if ingest is None:  # a bare SavedModel: prepare images as the config's ingestion would
        try:
            ingest = _load(config, sets).ingest.model_dump()
        except UserError:
            ingest = {}
    try:
        opts = IngestOptions.from_dict(ingest)
    except (TypeError, ValueError) as e:
        from pydantic import ValidationError

        from schemas.config import _one_line
        why = _one_line(e) if isinstance(e, ValidationError) else f"{type(e).__name__}: {e}"
        raise UserError(f"--model {model_ref!r}: the ingestion options in its model.json are not usable "
                        f"({why})") from None
    threshold = threshold if threshold is not None else float(meta.get("threshold") or 0.5)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from components.evaluator.scoring import ModelLoadError, chunks, load_scorer
    from pipeline.cli import progress_console
    from pipeline.logs import route_library_logs
    route_library_logs(None)
    try:
        score = load_scorer(model_dir)
    except ModelLoadError as e:
        raise UserError(str(e)) from None
    route_library_logs(None)
    items = list(_iter_paths(paths, opts.max_file_bytes))
    out = open(out_path, "w") if out_path else sys.stdout
    n_ok = n_err = 0

    def emit(path: str, p: float | None, error: str | None) -> None:
        row = {"path": path, "p_synthesized": None if p is None else round(float(p), 6),
               "label": None if p is None else ("synthesized" if p >= threshold else "real"),
               "threshold": threshold, "model_version": version}
        if error:
            row["error"] = error
        out.write(json.dumps(row) + "\n")
    try:
        with Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=progress_console, transient=True) as progress:
            task = progress.add_task("scoring", total=len(items))
            for batch in chunks(items, batch_size):
                prepared = [(path, *_prepare(path, reader, opts)) for path, reader in batch]
                good = [(path, data) for path, data, err in prepared if data is not None]
                scores: dict[str, float | str] = {}
                try:
                    scores = dict(zip([p for p, _ in good], score([d for _, d in good]))) if good else {}
                except Exception:  # noqa: BLE001 - one bad image must not sink the batch: retry one by one
                    for path, data in good:
                        try:
                            scores[path] = float(score([data])[0])
                        except Exception as e:  # noqa: BLE001
                            scores[path] = f"model_error: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
                for path, data, err in prepared:
                    s = scores.get(path) if err is None else None
                    if isinstance(s, str):
                        err, s = s, None
                    emit(path, s, err)
                    n_ok, n_err = n_ok + (err is None), n_err + (err is not None)
                out.flush()
                progress.advance(task, len(batch))
    finally:
        if out_path:
            out.close()
    progress_console.print(f"scored {n_ok} files, {n_err} errors; model {version}, threshold {threshold:.4f}")
