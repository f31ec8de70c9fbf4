"""Image perturbations of the robustness check, applied to the encoded bytes a model receives.

JPEG re-compression (q95, q75, q50), downscaling by 0.5 and Gaussian blur (sigma 1). Non-JPEG
results are stored as PNG (lossless), so only the named perturbation acts on the pixels."""
from __future__ import annotations

import io
from collections.abc import Callable

from PIL import Image, ImageFilter


def _rgb(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def jpeg(quality: int) -> Callable[[bytes], bytes]:
    return lambda data: _encode(_rgb(data), "JPEG", quality=quality)


def downscale(factor: float) -> Callable[[bytes], bytes]:
    def f(data: bytes) -> bytes:
        img = _rgb(data)
        size = (max(1, round(img.width * factor)), max(1, round(img.height * factor)))
        return _encode(img.resize(size, Image.Resampling.BILINEAR, reducing_gap=None), "PNG")
    return f


def blur(sigma: float) -> Callable[[bytes], bytes]:
    # Pillow's GaussianBlur radius is the standard deviation of the kernel.
    return lambda data: _encode(_rgb(data).filter(ImageFilter.GaussianBlur(radius=sigma)), "PNG")


PERTURBATIONS: dict[str, Callable[[bytes], bytes]] = {
    "jpeg_q95": jpeg(95),
    "jpeg_q75": jpeg(75),
    "jpeg_q50": jpeg(50),
    "downscale_0.5": downscale(0.5),
    "blur_sigma1": blur(1.0),
}
