"""The tf.Examples of an ingestion output read back (TFRecord shards found by
`components.ingest.outputs.shards`): for scoring the eval split (release check, benchmarks) and for
curating every written file."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from components.ingest import outputs
from components.transform.preprocessing import IMAGE_KEY, LABEL_KEY

# Example features kept next to each score (for slices and the report).
META_FEATURES = ("path", "label", "source", "generator", "content", "orig_format")


def _value(feature, decode: bool):
    for values in (feature.bytes_list.value, feature.int64_list.value, feature.float_list.value):
        if values:
            v = values[0]
            return v.decode() if decode and isinstance(v, bytes) else v
    return None


def iter_examples(examples_uri: str, split: str = "*", with_image: bool = False) -> Iterator[dict]:
    """One dict per example: its "split" and every feature (first value; strings decoded), the encoded
    image (`image_raw`) only with `with_image`."""
    import tensorflow as tf
    for split_name, files in outputs.shards(examples_uri, split).items():
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            ex = tf.train.Example.FromString(record.numpy())
            row = {"split": split_name}
            for name, feature in ex.features.feature.items():
                if name != IMAGE_KEY or with_image:
                    row[name] = _value(feature, decode=name != IMAGE_KEY)
            yield row


def read_split(examples_uri: str, split: str = "eval") -> tuple[list[bytes], np.ndarray, list[dict]]:
    """(encoded images, labels 0/1, metadata dicts) of one split of an ingestion output."""
    if not outputs.shards(examples_uri, split):
        raise FileNotFoundError(f"no TFRecords for split {split!r} under {examples_uri}")
    rows = list(iter_examples(examples_uri, split, with_image=True))
    meta = [{k: row.get(k) if row.get(k) is not None else "" for k in META_FEATURES} for row in rows]
    return [row[IMAGE_KEY] for row in rows], np.asarray([row[LABEL_KEY] for row in rows], np.int64), meta
