"""ExampleValidator's `anomalies` artifact read back: one `SchemaDiff.pb` (a TFDV `Anomalies` proto)
per split folder `Split-<split>/`."""
from __future__ import annotations

import os

SPLIT_PREFIX = "Split-"
ANOMALIES_FILE_PREFIX = "SchemaDiff"


def read_anomalies(uri: str) -> list[str]:
    """Every anomaly of an `anomalies` artifact, "<split>/<feature>: <short description>"; [] when the
    data matched the schema. OSError or google.protobuf's DecodeError when a file cannot be read."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    out = []
    for root, _, files in os.walk(uri):
        for name in sorted(files):
            if name.startswith(ANOMALIES_FILE_PREFIX):
                a = anomalies_pb2.Anomalies()
                with open(os.path.join(root, name), "rb") as f:
                    a.ParseFromString(f.read())
                split = os.path.basename(root).removeprefix(SPLIT_PREFIX)
                out += [f"{split}/{feat}: {info.short_description}" for feat, info in a.anomaly_info.items()]
    return out
