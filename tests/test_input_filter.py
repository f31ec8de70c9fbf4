"""model.input_filter: the artifact-focused inputs (NPR, SRM high-pass) of the shared decode."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")

from components.transform.preprocessing import decode_images, highpass, model_input, npr  # noqa: E402
from schemas.config import ConfigError, load_config  # noqa: E402


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("shape", [(32, 32), (33, 31)])
def test_npr_and_highpass_of_a_constant_image_are_zero(shape):
    const = tf.fill([2, *shape, 3], 137.0)
    assert npr(const).shape == const.shape and float(tf.reduce_max(tf.abs(npr(const)))) == 0.0
    hp = highpass(const)
    assert hp.shape == const.shape and float(tf.reduce_max(tf.abs(hp))) < 1e-3


def test_npr_is_zero_on_2x2_blocks_and_sees_nearest_upsampling_break():
    """An image nearest-upsampled x2 (what a decoder's up-sampling leaves) has NPR 0; the same image
    shifted by one pixel (cells straddle the blocks) or natural noise does not."""
    rng = np.random.default_rng(0)
    small = rng.uniform(0, 255, [1, 16, 16, 3]).astype(np.float32)
    up = np.repeat(np.repeat(small, 2, axis=1), 2, axis=2)
    assert float(tf.reduce_max(tf.abs(npr(tf.constant(up))))) == 0.0
    shifted = up[:, 1:-1, 1:-1]
    assert float(tf.reduce_mean(tf.abs(npr(tf.constant(shifted))))) > 10
    # by hand: pixel (1, 1) minus pixel (0, 0) of its cell, pixel (0, 0) itself 0
    x = rng.uniform(0, 255, [1, 4, 4, 3]).astype(np.float32)
    r = npr(tf.constant(x)).numpy()
    np.testing.assert_allclose(r[0, 1, 1], x[0, 1, 1] - x[0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(r[0, 2, 3], x[0, 2, 3] - x[0, 2, 2], rtol=1e-6)
    assert not r[0, 0, 0].any()


def test_decode_images_applies_the_filter_in_every_mode():
    rng = np.random.default_rng(1)
    noisy = _png(rng.integers(0, 256, [40, 48, 3]))
    flat = _png(np.full([40, 48, 3], 90))
    for mode in ("resize", "crop"):
        for f in ("npr", "highpass"):
            out = decode_images(tf.constant([flat, noisy]), 32, mode, input_filter=f).numpy()
            assert out.shape == (2, 32, 32, 3)
            assert np.abs(out[0]).max() < 1e-3 < np.abs(out[1]).mean()
        none = decode_images(tf.constant([flat]), 32, mode).numpy()
        np.testing.assert_allclose(none[0, 0, 0], np.array([90, 90, 90]) - [103.939, 116.779, 123.68], atol=1e-3)
    seeds = tf.constant([3, 4], tf.int64)  # training input (random crop + augmentation) goes through it too
    out = decode_images(tf.constant([flat, flat]), 32, "crop", seeds=seeds, augment_prob=None, input_filter="npr")
    assert float(tf.reduce_max(tf.abs(out))) == 0.0
    with pytest.raises(ValueError, match="input_filter must be one of"):
        decode_images(tf.constant([flat]), 32, input_filter="sobel")
    with pytest.raises(ValueError, match="input_filter must be one of"):
        model_input(tf.zeros([1, 32, 32, 3]), "sobel")


def test_config_names_the_filters(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{input: {tmp_path}}}\nmodel: {{input_filter: npr}}\n")
    assert load_config(str(cfg)).model.input_filter == "npr"
    cfg.write_text(f"data: {{input: {tmp_path}}}\nmodel: {{input_filter: sobel}}\n")
    with pytest.raises(ConfigError, match="model.input_filter"):
        load_config(str(cfg))
