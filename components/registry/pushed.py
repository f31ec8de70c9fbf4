"""RegistryPusher's `pushed_model` artifact, written and read back here: what the pusher did, as the
artifact's custom properties (ML Metadata locally, the artifact's metadata on Vertex AI) and as
push.json inside it. No TensorFlow at import: `synthdetect runs` reads the properties of every run.

    pushed               1 pushed, 0 not (not blessed, or a duplicate)
    pushed_version       the registry version (pushed only)
    pushed_destination   where the version is (pushed only)
    duplicate_of         blessed but not pushed: the registry's version of the same model
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping

PUSHED = "pushed"
PUSHED_VERSION = "pushed_version"
PUSHED_DESTINATION = "pushed_destination"
DUPLICATE_OF = "duplicate_of"
ALIASES = "aliases"
VERTEX_MODEL = "vertex_model"
PUSH_FILE = "push.json"


@dataclasses.dataclass(frozen=True)
class PushResult:
    version: str | None = None       # None: not pushed
    destination: str | None = None
    duplicate_of: str | None = None  # not pushed: the registry already holds this version of the same model


def push_result(properties: Mapping[str, object]) -> PushResult:
    """What a `pushed_model` artifact says, from its custom properties as a plain mapping (name ->
    int, float or str; {} when the pusher has not written any yet)."""
    def text(name: str) -> str | None:
        value = properties.get(name)
        return str(value) if value not in (None, "") else None
    pushed = properties.get(PUSHED)
    if pushed not in (None, "") and int(float(str(pushed))) == 1:
        to = text(PUSHED_DESTINATION)
        return PushResult(text(PUSHED_VERSION) or (os.path.basename(to.rstrip("/")) if to else None), to)
    return PushResult(duplicate_of=text(DUPLICATE_OF))


def write_push_record(uri: str, record: dict) -> None:
    """push.json in the artifact: what the pusher did (pushed where, or a duplicate of what)."""
    import tensorflow as tf
    with tf.io.gfile.GFile(os.path.join(uri, PUSH_FILE), "w") as f:
        json.dump(record, f)
