"""Vertex AI Model Registry as a push destination (production path; not exercised by the tests).

Selected by a registry URI of the form

    vertex://PROJECT/LOCATION/MODEL_ID?artifacts=gs://bucket/prefix

The version is first pushed to the GCS registry at `artifacts` (immutable vN/ with model.json, as
for any registry), then registered as a new *version* of one Vertex model with
`aiplatform.Model.upload(parent_model=…, version_aliases=…)`: the stock Vertex Pusher deploys an
endpoint and creates no versions, which is not what a registry is for.
"""
from __future__ import annotations

import dataclasses
import re
from urllib.parse import parse_qs, urlparse

from components.registry.store import DEFAULT_ALIASES, GcsRegistry, RegistryError, open_registry

# Vertex's pre-built TensorFlow serving image (CPU); the SavedModel's serving_default is served.
SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
_LABEL_RE = re.compile(r"[^a-z0-9_-]")


@dataclasses.dataclass(frozen=True)
class VertexTarget:
    project: str
    location: str
    model_id: str
    artifacts: str  # gs:// prefix of the GCS registry holding the model files

    @property
    def model_resource(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/models/{self.model_id}"


def is_vertex(location: str) -> bool:
    return location.startswith("vertex://")


def parse_target(location: str) -> VertexTarget:
    u = urlparse(location)
    parts = [u.netloc] + [p for p in u.path.split("/") if p]
    artifacts = (parse_qs(u.query).get("artifacts") or [""])[0]
    if len(parts) != 3 or not all(parts) or not artifacts.startswith("gs://"):
        raise RegistryError(f"registry {location!r}: expected "
                            "vertex://PROJECT/LOCATION/MODEL_ID?artifacts=gs://bucket/prefix")
    project, location_id, model_id = parts
    return VertexTarget(project, location_id, model_id, artifacts=artifacts)


def open_readable(location: str):
    """The registry holding a location's versions, for reading: a vertex:// destination keeps them in
    the GCS registry at its `artifacts`; any other location is its own registry."""
    return open_registry(parse_target(location).artifacts if is_vertex(location) else location)


def push(location: str, saved_model_dir: str, metadata: dict, aliases=DEFAULT_ALIASES,
         extra_files: dict[str, str] | None = None) -> tuple[str, str]:
    """Push to the GCS registry, then register that version in Vertex. Returns (version, resource)."""
    from google.api_core.exceptions import NotFound
    from google.cloud import aiplatform

    target = parse_target(location)
    gcs = GcsRegistry(target.artifacts)
    # aliases move only once Vertex has the version: a failed upload leaves them where they were
    version = gcs.push(saved_model_dir, metadata, aliases=(), extra_files=extra_files)
    aiplatform.init(project=target.project, location=target.location)
    try:
        parent = aiplatform.Model(model_name=target.model_resource).resource_name
    except NotFound:
        parent = None  # first version: creates the model under MODEL_ID
    cand = (metadata.get("metrics") or {}).get("candidate") or {}
    model = aiplatform.Model.upload(
        display_name=target.model_id,
        model_id=None if parent else target.model_id,
        parent_model=parent,
        is_default_version=True,
        version_aliases=[*aliases, version],
        version_description=(f"{version} run {(metadata.get('pipeline') or {}).get('run_id')}: "
                             f"accuracy {cand.get('binary_accuracy')}, AUC {cand.get('auc')}, "
                             f"threshold {metadata.get('threshold')}"),
        artifact_uri=f"{gcs.location}/{version}",
        serving_container_image_uri=SERVING_IMAGE,
        labels={"registry_version": _LABEL_RE.sub("-", version.lower()),
                "data_fingerprint": _LABEL_RE.sub("-", str((metadata.get("data") or {}).get("fingerprint", ""))
                                                  .removeprefix("sha256:")[:63])},
    )
    gcs.advance_aliases(version, aliases)
    return version, model.versioned_resource_name
