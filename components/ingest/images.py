"""Listing labelled image inputs and turning one file into a tf.Example (or a quarantine record).

Pure functions, no Beam: the Beam executor (`executor.py`) and the tests call them directly.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import posixpath
from typing import Iterator

import tensorflow as tf
from PIL import Image, ImageOps, UnidentifiedImageError

from components.ingest import dedup
from schemas.config import is_gcs

LABELS = ("real", "synthesized")
LABEL_IDS = {"real": 0, "synthesized": 1}
MANIFEST_NAMES = ("manifest.csv", "manifest.jsonl")
# Files in a label folder that are documentation, not data.
IGNORED_NAMES = {"readme.md", "readme.txt", "license", "license.txt", ".ds_store"} | set(MANIFEST_NAMES)
_EXT_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".webp": "WEBP",
                ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}

# Pillow raises DecompressionBombError itself above 2x its limit; we check the limit ourselves
# (configurable) and never let Pillow decide, so the reason code is ours.
Image.MAX_IMAGE_PIXELS = None


class InputError(Exception):
    """The input location is unusable (user mistake); one-line message."""


@dataclasses.dataclass(frozen=True)
class ImageInput:
    path: str
    label: str
    source: str = "unknown"
    generator: str = ""
    content: str = "unknown"


@dataclasses.dataclass(frozen=True)
class Decoded:
    """A decoded, accepted file: the tf.Example plus what deduplication needs."""
    example: tf.train.Example
    pixel_sha: str      # sha256 of the oriented RGB pixels (exact duplicates)
    phash: int          # 64-bit perceptual hash (near duplicates)
    pixels: int         # width x height, to keep the largest copy of a cluster


@dataclasses.dataclass(frozen=True)
class IngestOptions:
    neutralize_format: bool = True
    codec: str = "JPEG"
    quality: int = 95
    max_side: int = 256
    max_pixels: int = 89_478_485
    background: tuple[int, int, int] = (255, 255, 255)
    dedup: bool = True
    near_duplicate_max_distance: int = 6
    lsh_tables: int = 20
    lsh_bits: int = 16
    feedback: str | None = None

    @classmethod
    def from_dict(cls, d: dict) -> "IngestOptions":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for k in ("quality", "max_side", "max_pixels", "near_duplicate_max_distance", "lsh_tables", "lsh_bits"):
            if k in kw:
                kw[k] = int(kw[k])
        if "background" in kw:
            kw["background"] = tuple(int(x) for x in kw["background"])
        return cls(**kw)


# --------------------------------------------------------------------------------------- listing
def _read_text(path: str) -> str:
    from apache_beam.io.filesystems import FileSystems
    try:
        with FileSystems.open(path) as f:
            return f.read().decode("utf-8-sig")  # Excel writes a byte-order mark
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {path}: {type(e).__name__}: {str(e).splitlines()[0][:160]}") from None


def _join(root: str, rel: str) -> str:
    if "://" in rel:  # a manifest row may name gs://… directly
        return rel
    if is_gcs(root):
        return posixpath.join(root, rel)
    return rel if os.path.isabs(rel) else os.path.join(root, rel)


def _manifest_rows(manifest: str) -> Iterator[dict]:
    text = _read_text(manifest)
    if manifest.endswith(".jsonl"):
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    raise InputError(f"{manifest}: line {n} is not valid JSON") from None
    else:
        yield from csv.DictReader(io.StringIO(text))


def read_manifest(manifest: str) -> list[ImageInput]:
    root = posixpath.dirname(manifest) if is_gcs(manifest) else os.path.dirname(os.path.abspath(manifest))
    out = []
    for n, row in enumerate(_manifest_rows(manifest), 2):
        if not isinstance(row, dict) or not row.get("path") or not row.get("label"):
            raise InputError(f"{manifest}: row {n} needs 'path' and 'label'")
        label = str(row["label"]).strip().lower()
        if label not in LABELS:
            raise InputError(f"{manifest}: row {n} has label {row['label']!r}; expected one of {', '.join(LABELS)}")
        out.append(ImageInput(path=_join(root, row["path"]), label=label,
                              source=row.get("source") or "unknown", generator=row.get("generator") or "",
                              content=row.get("content") or "unknown"))
    if not out:
        raise InputError(f"{manifest}: no rows")
    return out


def _walk(root: str) -> Iterator[str]:
    if is_gcs(root):
        from google.cloud import storage
        bucket, _, prefix = root[len("gs://"):].partition("/")
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        for blob in storage.Client().list_blobs(bucket, prefix=prefix):
            if not blob.name.endswith("/"):
                yield blob.name[len(prefix):]
    else:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                yield os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")


def list_inputs(input_base: str) -> list[ImageInput]:
    """Every labelled input under `input_base`: a manifest file, a folder with a manifest, or a
    folder laid out as <root>/<real|synthesized>/[<source>/]**/<file>."""
    base = input_base.rstrip("/")
    if base.endswith((".csv", ".jsonl")):
        if not is_gcs(base) and not os.path.isfile(base):
            raise InputError(f"manifest {base!r} not found")
        return read_manifest(base)
    if not is_gcs(base) and not os.path.isdir(base):
        raise InputError(f"input {base!r} is neither a folder nor a manifest (.csv/.jsonl)")
    rels = list(_walk(base))
    for name in MANIFEST_NAMES:
        if name in rels:
            return read_manifest(_join(base, name))
    out, unlabelled = [], []
    for rel in rels:
        parts = rel.split("/")
        if parts[-1].lower() in IGNORED_NAMES or parts[-1].startswith("."):
            continue  # documentation and hidden files next to the images
        if len(parts) < 2 or parts[0].lower() not in LABELS:
            if len(parts) >= 2 or os.path.splitext(rel)[1].lower() in _EXT_FORMATS:
                unlabelled.append(rel)  # an image (or a folder of files) without a label folder
            continue
        source = parts[1] if len(parts) > 2 else "unknown"
        out.append(ImageInput(path=_join(base, rel), label=parts[0].lower(), source=source))
    if unlabelled:
        tops = sorted({r.split("/")[0] + ("/" if "/" in r else "") for r in unlabelled})
        raise InputError(f"{len(unlabelled)} files under {base!r} are outside real/ and synthesized/ "
                         f"({', '.join(tops[:5])}{' …' if len(tops) > 5 else ''}): move them into a label folder "
                         "or list them in a manifest.csv")
    if not out:
        raise InputError(f"no images under {base!r}: expected {base}/real/... and {base}/synthesized/... or a manifest.csv")
    return out


def read_feedback(path: str) -> dict[str, dict]:
    """Curator decisions (`synthdetect curate export-feedback`): path -> {"action": "exclude"} or
    {"action": "relabel", "label": ...}."""
    out = {}
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise InputError(f"feedback file {path}: line {n} is not valid JSON") from None
        action = rec.get("action")
        if not rec.get("path") or action not in ("exclude", "relabel") or (
                action == "relabel" and rec.get("label") not in LABELS):
            raise InputError(f"feedback file {path}: line {n} needs path and action exclude|relabel "
                             f"(relabel with label {'|'.join(LABELS)})")
        out[rec["path"]] = rec
    return out


def quarantine_record(path: str, label: str, source: str, reason: str, detail: str = "") -> dict:
    """One line of quarantine.jsonl."""
    return {"path": path, "label": label, "source": source, "reason": reason, "detail": detail[:300]}


def apply_feedback(items: list[ImageInput], feedback: dict[str, dict]) -> tuple[list[ImageInput], list[dict]]:
    """Returns (items to ingest, quarantine records for excluded files); relabels are applied."""
    kept, excluded = [], []
    for it in items:
        rec = feedback.get(it.path)
        if rec is None:
            kept.append(it)
        elif rec["action"] == "exclude":
            excluded.append(quarantine_record(it.path, it.label, it.source, "curator_excluded",
                                              rec.get("note", "")))
        else:
            kept.append(dataclasses.replace(it, label=rec["label"]))
    return kept, excluded


# --------------------------------------------------------------------------------------- decoding
def _bytes(v: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def _int(v: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))


def _read_bytes(path: str) -> bytes:
    from apache_beam.io.filesystems import FileSystems
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return f.read()


def _to_rgb(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if img.mode.startswith("I;16") or img.mode == "I":  # 16-bit grayscale (any byte order): to 8 bits
        img = img.convert("I").point(lambda v: v / 256).convert("L")
    return img.convert("RGB")


def decode_file(item: ImageInput, opts: IngestOptions, data: bytes | None = None):
    """Fully decode one file. Returns ("ok", Decoded) or ("quarantine", dict with reason)."""
    def quarantine(reason: str, detail: str = "") -> tuple[str, dict]:
        return "quarantine", quarantine_record(item.path, item.label, item.source, reason, detail)

    if data is None:
        try:
            data = _read_bytes(item.path)
        except Exception as e:  # noqa: BLE001 - every unreadable path is quarantined, never fatal
            return quarantine("unreadable_path", f"{type(e).__name__}: {e}")
    if not data:
        return quarantine("zero_bytes")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return quarantine("not_an_image")
    except Exception as e:  # noqa: BLE001
        return quarantine("not_an_image", f"{type(e).__name__}: {e}")
    fmt = (img.format or "UNKNOWN").upper()
    width, height = img.size
    if width * height > opts.max_pixels:
        return quarantine("too_many_pixels", f"{width}x{height} > {opts.max_pixels}")
    animated = bool(getattr(img, "is_animated", False))
    if fmt == "JPEG" and not opts.neutralize_format:
        # Raw mode keeps the published bytes, so the decode only feeds the hashes: DCT-domain
        # downscaling (1/2..1/8) is cheaper and still reads the whole stream. Never with format
        # neutralisation: JPEGs (mostly real photos) would be resampled differently from PNGs.
        img.draft(None, (opts.max_side, opts.max_side))
    try:
        img.seek(0)
        img.load()
    except Exception as e:  # noqa: BLE001 - truncated/corrupt data
        return quarantine(f"truncated_{fmt.lower()}" if "truncated" in str(e).lower() else "corrupt_image",
                          f"{type(e).__name__}: {e}")
    ext = os.path.splitext(item.path)[1].lower()
    ext_mismatch = ext in _EXT_FORMATS and _EXT_FORMATS[ext] != fmt
    try:
        img = ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001 - a broken EXIF block must not reject a good image
        pass
    mode = img.mode
    try:
        return "ok", _encode(item, opts, img, data, fmt, mode, width, height, animated, ext_mismatch)
    except Exception as e:  # noqa: BLE001 - an unconvertible image is quarantined, never fatal
        return quarantine("corrupt_image", f"conversion failed: {type(e).__name__}: {e}")


def _encode(item: ImageInput, opts: IngestOptions, img: Image.Image, data: bytes, fmt: str, mode: str,
            width: int, height: int, animated: bool, ext_mismatch: bool) -> "Decoded":
    sha256 = hashlib.sha256(data).hexdigest()
    rgb = _to_rgb(img, opts.background)
    pixel_sha = dedup.pixel_hash(rgb)
    small = rgb
    if opts.max_side and max(rgb.size) > opts.max_side:  # both classes alike: longest side <= max_side (0: native)
        small = rgb.copy()
        small.thumbnail((opts.max_side, opts.max_side), Image.LANCZOS)
    phash = dedup.perceptual_hash(small)
    if opts.neutralize_format:
        buf = io.BytesIO()
        if opts.codec == "JPEG":
            small.save(buf, "JPEG", quality=opts.quality)
        else:
            small.save(buf, opts.codec)
        encoded, codec = buf.getvalue(), opts.codec
    elif fmt in ("JPEG", "PNG", "GIF", "BMP") and not animated:
        encoded, codec = data, fmt  # the paper's raw path: bytes as published
    else:  # formats tf.io.decode_image cannot read are converted losslessly
        buf = io.BytesIO()
        rgb.save(buf, "PNG")
        encoded, codec = buf.getvalue(), "PNG"
    feats = {
        "image_raw": _bytes(encoded),
        "label": _bytes(item.label.encode()),
        "label_id": _int(LABEL_IDS[item.label]),
        "source": _bytes(item.source.encode()),
        "generator": _bytes(item.generator.encode()),
        "content": _bytes(item.content.encode()),
        "path": _bytes(item.path.encode()),
        "sha256": _bytes(sha256.encode()),
        "orig_format": _bytes(fmt.encode()),
        "orig_mode": _bytes(mode.encode()),
        "orig_width": _int(width),
        "orig_height": _int(height),
        "codec": _bytes(codec.encode()),
        "animated": _int(animated),
        "ext_mismatch": _int(ext_mismatch),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feats))
    return Decoded(example=example, pixel_sha=pixel_sha, phash=phash, pixels=width * height)
