"""One file -> a tf.Example (or a quarantine record), without TensorFlow.

Pure functions, no Beam: the Beam job (`job.py`), `synthdetect predict`, curation and the tests call
them directly. Reading never blocks and never loads more than `ingest.max_file_bytes`: a FIFO or a
device named in a manifest is refused without reading it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import stat

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from components.ingest import dedup
from components.ingest.listing import LABEL_IDS, ImageInput
from components.ingest.records import ExampleMessage, make_example
from schemas.config import IngestConfig, is_gcs

_EXT_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".webp": "WEBP",
                ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}

# Pillow raises DecompressionBombError itself above 2x its limit; we check the limit ourselves
# (configurable) and never let Pillow decide, so the reason code is ours.
Image.MAX_IMAGE_PIXELS = None


@dataclasses.dataclass(frozen=True)
class Decoded:
    """A decoded, accepted file: the tf.Example plus what deduplication needs."""
    example: ExampleMessage
    pixel_sha: str      # sha256 of the oriented RGB pixels (exact duplicates)
    phash: int          # 64-bit perceptual hash (near duplicates)
    pixels: int         # width x height, to keep the largest copy of a cluster
    min_side: int = 0   # shorter side; tiny images take no part in near-duplicate search
    thumb: bytes = b""  # 4x4 RGB thumbnail: near duplicates must also agree in colour


def quarantine_record(path: str, label: str, source: str, reason: str, detail: str = "") -> dict:
    """One line of quarantine.jsonl."""
    return {"path": path, "label": label, "source": source, "reason": reason, "detail": detail[:300]}


class ReadRefused(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def read_file(path: str, max_bytes: int) -> bytes:
    """The file's bytes; ReadRefused(not_a_file | too_large | unreadable_path) without blocking on
    FIFOs or reading devices (local paths are opened non-blocking and checked with fstat)."""
    if is_gcs(path):
        # the storage client names the object itself (escaped: '#', '?', spaces), never through the
        # object's mediaLink, and reads at most max_bytes + 1 bytes of it
        from components.ingest.archives import read_range
        try:
            data = read_range(path, 0, max_bytes + 1)
        except Exception as e:  # noqa: BLE001 - every unreadable object is quarantined, never fatal
            if getattr(e, "code", None) == 416:   # a range of an empty object
                return b""
            raise ReadRefused("unreadable_path", f"{type(e).__name__}: {str(e)[:200]}") from None
    else:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            raise ReadRefused("unreadable_path", f"{type(e).__name__}: {e.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ReadRefused("not_a_file", "not a regular file")
            if st.st_size > max_bytes:
                raise ReadRefused("too_large", f"{st.st_size} bytes > {max_bytes}")
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read(max_bytes + 1)
        except OSError as e:
            raise ReadRefused("unreadable_path", f"{type(e).__name__}: {e.strerror}") from None
        finally:
            os.close(fd)
    if len(data) > max_bytes:
        raise ReadRefused("too_large", f"more than {max_bytes} bytes")
    return data


def read_input(item: ImageInput, max_bytes: int) -> bytes:
    """An input's bytes: a file (`read_file`) or a member of an archive (one ranged read)."""
    if not item.archive:
        return read_file(item.path, max_bytes)
    from components.ingest.archives import MemberError, entry_from_list, read_member
    try:
        return read_member(item.archive, item.archive_version, entry_from_list(item.entry), max_bytes)
    except MemberError as e:
        raise ReadRefused(e.reason, e.detail) from None


cv2.setNumThreads(1)  # one core per ingestion worker; Beam runs one worker per core


def downscale(pixels: np.ndarray, max_side: int) -> np.ndarray:
    """Longest side to `max_side`, aspect kept, by area averaging (OpenCV INTER_AREA: an exact
    antialiasing filter for downscaling, 3x faster than Pillow's LANCZOS here). Same for every
    image whatever its format, so the resize carries no label."""
    h, w = pixels.shape[:2]
    scale = max_side / max(w, h)
    size = (max(1, min(max_side, round(w * scale))), max(1, min(max_side, round(h * scale))))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


class Unsupported(Exception):
    """An image that decodes but whose pixel values have no defined meaning as 8-bit colour."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _float_to_l(img: Image.Image) -> Image.Image:
    """A 32-bit float image (mode F, e.g. a scientific TIFF) as 8-bit grey: values in 0..1 are
    scaled by 255, values in 0..255 kept; anything else (negative, larger, NaN) has no defined
    meaning as colour and is refused (Pillow's own convert clips 0..1 to black)."""
    arr = np.asarray(img, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise Unsupported("unsupported_pixel_values", "float image with NaN or infinite values")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if lo < 0 or hi > 255:
        raise Unsupported("unsupported_pixel_values",
                          f"float image with values {lo:g}..{hi:g} (expected 0..1 or 0..255)")
    scale = 255.0 if hi <= 1.0 else 1.0
    return Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8), "L")


def _to_rgb(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode == "F":
        return _float_to_l(img).convert("RGB")
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, tuple(background))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if img.mode.startswith("I;16") or img.mode == "I":  # 16-bit grayscale (any byte order): to 8 bits
        img = img.convert("I").point(lambda v: v / 256).convert("L")
    return img.convert("RGB")


def decode_file(item: ImageInput, opts: IngestConfig, data: bytes | None = None):
    """Fully decode one file. Returns ("ok", Decoded) or ("quarantine", dict with reason)."""
    def quarantine(reason: str, detail: str = "") -> tuple[str, dict]:
        return "quarantine", quarantine_record(item.path, item.label, item.source, reason, detail)

    if data is None:
        try:
            data = read_input(item, opts.max_file_bytes)
        except ReadRefused as e:
            return quarantine(e.reason, e.detail)
    if not data:
        return quarantine("zero_bytes")
    if len(data) > opts.max_file_bytes:
        return quarantine("too_large", f"{len(data)} bytes > {opts.max_file_bytes}")
    try:
        img: Image.Image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return quarantine("not_an_image")
    except Exception as e:  # noqa: BLE001 - whatever Pillow raises on open, the file is not an image
        return quarantine("not_an_image", f"{type(e).__name__}: {e}")
    fmt = (img.format or "UNKNOWN").upper()
    width, height = img.size
    if width * height > opts.max_pixels:
        return quarantine("too_many_pixels", f"{width}x{height} > {opts.max_pixels}")
    animated = bool(getattr(img, "is_animated", False))
    if fmt == "JPEG" and not opts.neutralize_format and opts.max_side:
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
        if img.getexif().get(0x0112, 1) not in (0, 1):  # an EXIF orientation to apply (else no copy)
            img = ImageOps.exif_transpose(img) or img
    except Exception:  # noqa: BLE001 - a broken EXIF block must not reject a good image
        pass
    mode = img.mode
    try:
        return "ok", _encode(item, opts, img, data, fmt, mode, width, height, animated, ext_mismatch)
    except Unsupported as e:
        return quarantine(e.reason, e.detail)
    except Exception as e:  # noqa: BLE001 - an unconvertible image is quarantined, never fatal
        return quarantine("corrupt_image", f"conversion failed: {type(e).__name__}: {e}")


def _encode(item: ImageInput, opts: IngestConfig, img: Image.Image, data: bytes, fmt: str, mode: str,
            width: int, height: int, animated: bool, ext_mismatch: bool) -> Decoded:
    sha256 = hashlib.sha256(data).hexdigest()
    rgb = _to_rgb(img, opts.background)
    pixels = np.asarray(rgb)                       # one view of the pixels for hashing and resizing
    pixel_sha = dedup.pixel_hash_array(pixels)
    small = rgb
    if opts.max_side and max(rgb.size) > opts.max_side:  # the same policy for both classes
        small = Image.fromarray(downscale(pixels, opts.max_side), "RGB")
    phash = dedup.perceptual_hash(small)
    thumb = dedup.color_thumbnail(np.asarray(small))
    codec: str
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
    example = make_example({
        "image_raw": encoded,
        "label": item.label,
        "label_id": LABEL_IDS[item.label],
        "source": item.source,
        "generator": item.generator,
        "content": item.content,
        "path": item.path,
        "sha256": sha256,
        "orig_format": fmt,
        "orig_mode": mode,
        "orig_width": width,
        "orig_height": height,
        "codec": codec,
        "animated": int(animated),
        "ext_mismatch": int(ext_mismatch),
    })
    return Decoded(example=example, pixel_sha=pixel_sha, phash=phash, pixels=width * height,
                   min_side=min(width, height), thumb=thumb)

