"""tf.train.Example protos and GZIP TFRecord files without importing TensorFlow.

Ingestion workers decode images with Pillow; importing TensorFlow in each of them would cost seconds
and hundreds of MB per process for two small jobs: building `tf.train.Example` messages and framing
them as TFRecords. Both are plain wire formats:

* `Example`: the message classes are built by the protobuf library from a descriptor of TensorFlow's
  `example.proto`/`feature.proto` (same field numbers, so the bytes are the same as TensorFlow's
  `SerializeToString(deterministic=True)`; a test checks this against TensorFlow itself).
* TFRecord: `uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)`
  (google-crc32c, C implementation), inside one gzip stream with a zero timestamp, so reruns are
  byte-identical. `tf.data.TFRecordDataset(..., compression_type="GZIP")` reads them.
"""
from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO, TypeAlias

import google_crc32c
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


def _build_classes():
    fd = descriptor_pb2.FileDescriptorProto(name="synthdetect/tf_example.proto", package="tensorflow",
                                            syntax="proto3")

    def message(name: str, fields: list[tuple[str, int, int, int, str]], options=None):
        m = fd.message_type.add(name=name)
        for fname, number, label, ftype, type_name in fields:
            f = m.field.add(name=fname, number=number, label=label, type=ftype)
            if type_name:
                f.type_name = type_name
        return m

    rep, opt = _F.LABEL_REPEATED, _F.LABEL_OPTIONAL
    message("BytesList", [("value", 1, rep, _F.TYPE_BYTES, "")])
    message("FloatList", [("value", 1, rep, _F.TYPE_FLOAT, "")]).field[0].options.packed = True
    message("Int64List", [("value", 1, rep, _F.TYPE_INT64, "")]).field[0].options.packed = True
    feature = message("Feature", [("bytes_list", 1, opt, _F.TYPE_MESSAGE, ".tensorflow.BytesList"),
                                  ("float_list", 2, opt, _F.TYPE_MESSAGE, ".tensorflow.FloatList"),
                                  ("int64_list", 3, opt, _F.TYPE_MESSAGE, ".tensorflow.Int64List")])
    feature.oneof_decl.add(name="kind")
    for f in feature.field:
        f.oneof_index = 0
    features = message("Features", [("feature", 1, rep, _F.TYPE_MESSAGE, ".tensorflow.Features.FeatureEntry")])
    entry = features.nested_type.add(name="FeatureEntry")
    entry.field.add(name="key", number=1, label=opt, type=_F.TYPE_STRING)
    entry.field.add(name="value", number=2, label=opt, type=_F.TYPE_MESSAGE, type_name=".tensorflow.Feature")
    entry.options.map_entry = True
    message("Example", [("features", 1, opt, _F.TYPE_MESSAGE, ".tensorflow.Features")])

    pool = descriptor_pool.DescriptorPool()  # private: never clashes with TensorFlow's own registration
    pool.Add(fd)
    factory = message_factory.MessageFactory(pool)
    return factory.GetPrototype(pool.FindMessageTypeByName("tensorflow.Example"))


Example = _build_classes()
# An Example message, for annotations: its class is built at run time, so it has no static type.
ExampleMessage: TypeAlias = Any


def make_example(features: Mapping[str, bytes | str | int]) -> ExampleMessage:
    """bytes/str values become a one-element bytes_list, ints a one-element int64_list."""
    ex = Example()
    fmap = ex.features.feature
    for key, value in features.items():
        if isinstance(value, bool) or isinstance(value, int):
            fmap[key].int64_list.value.append(int(value))
        else:
            fmap[key].bytes_list.value.append(value.encode() if isinstance(value, str) else value)
    return ex


def parse_example(serialized: bytes) -> ExampleMessage:
    ex = Example()
    ex.ParseFromString(serialized)
    return ex


# --------------------------------------------------------------------------------------- TFRecord
def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    length = struct.pack("<Q", len(record))
    return length + struct.pack("<I", _masked_crc(length)) + record + struct.pack("<I", _masked_crc(record))


class GzipTFRecordWriter:
    """Writes framed records into a gzip stream on `fileobj` (any binary writable, e.g. Beam's
    FileSystems.create). Level 1: image payloads are already compressed; the reader does not care."""

    def __init__(self, fileobj: BinaryIO, compresslevel: int = 1):
        self._raw = fileobj
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=fileobj, compresslevel=compresslevel, mtime=0)
        self.count = 0

    def write(self, record: bytes) -> None:
        self._gz.write(frame(record))
        self.count += 1

    def close(self) -> None:
        self._gz.close()
        self._raw.close()

    def __enter__(self) -> GzipTFRecordWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_gzip_tfrecords(fileobj: BinaryIO) -> Iterator[bytes]:
    """Reads records back (checking both CRCs); for tests and tools that run without TensorFlow."""
    with gzip.GzipFile(fileobj=fileobj, mode="rb") as gz:
        while True:
            head = gz.read(12)
            if not head:
                return
            if len(head) < 12:
                raise ValueError("truncated TFRecord header")
            length, crc = struct.unpack("<QI", head)
            if crc != _masked_crc(head[:8]):
                raise ValueError("corrupt TFRecord length")
            data = gz.read(length)
            (dcrc,) = struct.unpack("<I", gz.read(4))
            if len(data) < length or dcrc != _masked_crc(data):
                raise ValueError("corrupt TFRecord data")
            yield data
