"""Preprocessing shared by training and serving (one place, no train/serve skew).

The Transform graph keeps the *encoded* image bytes (decoded 224x224x3 floats would be ~600 KB per
image); `decode_images` turns bytes into the VGG16 input tensor and is called both in the training
tf.data map and inside the exported serving signatures.
"""
from __future__ import annotations

import tensorflow as tf

IMAGE_KEY = "image_raw"
LABEL_KEY = "label_id"
# Raw features the model needs at serving time (everything else is metadata for slicing).
SERVING_FEATURES = (IMAGE_KEY,)
# VGG16 "caffe" normalisation: BGR order, ImageNet channel means subtracted, no scaling.
_BGR_MEANS = tf.constant([103.939, 116.779, 123.68], dtype=tf.float32)


def _flat(x: tf.Tensor) -> tf.Tensor:
    return tf.reshape(x, [-1])


def preprocessing_fn(inputs: dict) -> dict:
    """TFX Transform entry point: pass the encoded image through, the label as an int 0/1."""
    return {IMAGE_KEY: _flat(inputs[IMAGE_KEY]), LABEL_KEY: _flat(inputs[LABEL_KEY])}


def _decode_uint8(encoded: tf.Tensor) -> tf.Tensor:
    img = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    img.set_shape([None, None, 3])
    return img


def _resize(img: tf.Tensor, image_size: int) -> tf.Tensor:
    img = tf.image.resize(tf.cast(img, tf.float32), [image_size, image_size], antialias=True)
    return tf.clip_by_value(img, 0.0, 255.0)


def decode_one(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded JPEG/PNG/GIF/BMP bytes -> float32 [size, size, 3] RGB in 0..255.

    Centre-crop to a square, then resize: the same for both classes, aspect ratio kept."""
    img = _decode_uint8(encoded)
    shape = tf.shape(img)
    side = tf.minimum(shape[0], shape[1])
    return _resize(tf.image.resize_with_crop_or_pad(img, side, side), image_size)


def _gaussian_blur(img: tf.Tensor, sigma: tf.Tensor, radius: int = 9) -> tf.Tensor:
    """Separable Gaussian blur of a float [H, W, 3] image (radius 9 covers sigma <= 3); channels
    are blurred as a batch of single-channel images (depthwise_conv2d aborts in oneDNN here)."""
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    k = tf.exp(-0.5 * tf.square(x / tf.maximum(sigma, 1e-3)))
    k = k / tf.reduce_sum(k)
    chans = tf.transpose(img, [2, 0, 1])[..., None]  # [3, H, W, 1]
    padded = tf.pad(chans, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
    out = tf.nn.conv2d(padded, tf.reshape(k, [1, -1, 1, 1]), 1, "VALID")
    out = tf.nn.conv2d(out, tf.reshape(k, [-1, 1, 1, 1]), 1, "VALID")
    return tf.transpose(out[..., 0], [1, 2, 0])


def augment_one(encoded: tf.Tensor, image_size: int, prob: float) -> tf.Tensor:
    """Training-only augmentation against the format/resize shortcuts (Wang et al. 2020), the same
    for both classes: JPEG re-compression (quality 30-100) with probability `prob`, Gaussian blur
    (sigma 0-3) with probability `prob`, a random square crop of 80-100 % of the short side resized
    like the evaluation input, horizontal flip."""
    img = _decode_uint8(encoded)
    img = tf.cond(tf.random.uniform([]) < prob,
                  lambda: tf.image.random_jpeg_quality(img, 30, 100), lambda: img)
    shape = tf.shape(img)
    short = tf.minimum(shape[0], shape[1])
    # 80-100 % of the short side, then the same antialiased resize as evaluation and serving (a
    # native-resolution crop would train on unresampled pixels the model never sees when served)
    crop = tf.maximum(tf.cast(tf.cast(short, tf.float32) * tf.random.uniform([], 0.8, 1.0), tf.int32), 1)
    img = tf.image.random_crop(img, tf.stack([crop, crop, 3]))
    img = tf.image.random_flip_left_right(_resize(img, image_size))
    sigma = tf.random.uniform([], 0.0, 3.0)
    img = tf.cond(tf.logical_and(tf.random.uniform([]) < prob, sigma > 0.1),
                  lambda: _gaussian_blur(img, sigma), lambda: img)
    return tf.clip_by_value(img, 0.0, 255.0)


def vgg_normalise(rgb: tf.Tensor) -> tf.Tensor:
    return rgb[..., ::-1] - _BGR_MEANS


def decode_images(encoded: tf.Tensor, image_size: int, augment_prob: float | None = None) -> tf.Tensor:
    """Batch of encoded images [N] -> VGG16 input [N, size, size, 3]. `augment_prob` set: training
    augmentation (never used by evaluation or the serving signatures)."""
    if augment_prob is None:
        fn = lambda b: decode_one(b, image_size)  # noqa: E731
    else:
        fn = lambda b: augment_one(b, image_size, augment_prob)  # noqa: E731
    imgs = tf.map_fn(fn, _flat(encoded), fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))
    return vgg_normalise(imgs)
