"""Which SavedModel a model reference names: the one resolver of `predict`, `curate` and the
benchmarks, fetching remote models into the local cache (`components/cache.py`).

    registry:REF   a version or alias of a registry (`registry:production`, `registry:v3`,
                   `registry:3`; `registry:` alone is production): a directory, gs://bucket/prefix,
                   or vertex://PROJECT/LOCATION/MODEL?artifacts=gs://… (its versions live in that
                   GCS registry). gs:// versions are copied once into the cache (they are immutable).
    PATH           a SavedModel directory or a Trainer model artifact, local or gs:// (copied into
                   the cache, keyed on the path and the objects' generations: a model replaced at
                   the same path is fetched again).

A run's model is a Trainer artifact found through ML Metadata (`pipeline/artifacts.py`), which
resolves it here by its path. Every reference gives a `ResolvedModel`: a local SavedModel directory,
the model.json that describes it ({} if none), a version label, and the calibrated decision
threshold when the model ships one (model.json, or assets.extra/calibration.json).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from components.cache import CacheError, cache_dir, key, usable_cache_dir
from components.registry.store import (CALIBRATION_PATH, MODEL_JSON, GcsRegistry, RegistryError, download_tree,
                                       list_tree, parse_json_object, tree_generation)
from components.registry.vertex import open_readable
from components.trainer.artifact import SAVED_MODEL_FILE, serving_model_dir

REGISTRY_PREFIX = "registry:"
DEFAULT_ALIAS = "production"


class ModelError(Exception):
    """A model reference that names no usable model (one-line message)."""


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    path: str                  # local SavedModel directory
    meta: dict                 # model.json of a registry version (or next to the SavedModel), else {}
    version: str               # "v3" for a registry version, else model.json's version or the path
    threshold: float | None    # calibrated decision threshold, if the model ships one

    @property
    def serving_ingest(self) -> dict | None:
        """The ingestion options the model was trained with (model.json), to prepare images alike."""
        return (self.meta.get("serving") or {}).get("ingest")


def resolve_model(ref: str, registry: str | None = None) -> ResolvedModel:
    """`registry:REF` (in the registry at `registry`) or a SavedModel / model artifact path."""
    if ref.startswith(REGISTRY_PREFIX):
        return _from_registry(ref, registry)
    return _from_path(ref)


def _from_registry(ref: str, location: str | None) -> ResolvedModel:
    name = ref[len(REGISTRY_PREFIX):].strip() or DEFAULT_ALIAS
    if not location:
        raise ModelError(f"--model {ref!r}: no registry configured (config key `registry`)")
    try:
        reg = open_readable(location)
        version = reg.resolve(name)
        meta = reg.model_json(version)
        if isinstance(reg, GcsRegistry):
            try:
                usable_cache_dir("registry")
            except CacheError as e:
                raise ModelError(str(e)) from None
            path = str(reg.download(version, cache_dir("registry", key(reg.location), version)))
        else:
            path = str(reg.local_dir(version))
    except RegistryError as e:
        raise ModelError(str(e)) from None
    return _resolved(path, meta, f"{version}/{MODEL_JSON} in {reg.location!r}", version)


def _from_path(ref: str) -> ResolvedModel:
    local = ref
    if ref.startswith("gs://"):
        # cached per content, not per path: another model uploaded to the same path has other
        # generations, so it is fetched again (a listing per call; the copy is reused when unchanged)
        from google.api_core.exceptions import NotFound
        try:
            usable_cache_dir("models")   # before any network call
        except CacheError as e:
            raise ModelError(str(e)) from None
        try:
            objects = list_tree(ref.rstrip("/"))
            if not objects:
                raise FileNotFoundError(ref)
            content = f"{key(ref.rstrip('/'))}-{tree_generation(objects)[:16]}"
            local = str(download_tree(ref, cache_dir("models", content), objects=objects))
        except (FileNotFoundError, NotFound):   # NotFound: no such bucket
            raise ModelError(f"--model {ref!r}: no such SavedModel directory (or use registry:production, "
                             "registry:v3)") from None
    if not Path(local).exists():
        raise ModelError(f"--model {ref!r}: no such SavedModel directory (or use registry:production, registry:v3)")
    path = Path(serving_model_dir(local))
    label = ref if ref.startswith("gs://") else str(Path(ref))
    if not (path / SAVED_MODEL_FILE).is_file():
        raise ModelError(f"--model {ref!r}: not a SavedModel directory (no {SAVED_MODEL_FILE})")
    for name in (MODEL_JSON, CALIBRATION_PATH):
        file = path / name
        if file.is_file():
            try:
                data = parse_json_object(file.read_bytes(), str(file))
            except RegistryError as e:
                raise ModelError(f"--model {ref!r}: {e}") from None
            meta = data if name == MODEL_JSON else {"threshold": data.get("threshold")}
            return _resolved(str(path), meta, f"--model {ref!r}: {file}", str(meta.get("version") or label))
    return ResolvedModel(str(path), {}, label, None)


def _resolved(path: str, meta: dict, where: str, version: str) -> ResolvedModel:
    """Checks the fields the consumers use: a threshold in [0, 1] and the ingestion options."""
    t = meta.get("threshold")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1):
        raise ModelError(f"{where}: \"threshold\" must be a number in [0, 1], found {t!r}")
    serving = meta.get("serving")
    ingest = serving.get("ingest") if isinstance(serving, dict) else None
    if (serving is not None and not isinstance(serving, dict)) or (ingest is not None and not isinstance(ingest, dict)):
        raise ModelError(f"{where}: \"serving\" must be {{\"ingest\": {{…}}}}, found {serving!r:.80}")
    return ResolvedModel(path, meta, version, None if t is None else float(t))
