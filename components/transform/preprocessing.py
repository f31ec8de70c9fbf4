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


def decode_one(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """Encoded JPEG/PNG/GIF/BMP bytes -> float32 [size, size, 3] RGB in 0..255.

    Centre-crop to a square, then resize: the same for both classes, aspect ratio kept."""
    img = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    img.set_shape([None, None, 3])
    shape = tf.shape(img)
    side = tf.minimum(shape[0], shape[1])
    img = tf.image.resize_with_crop_or_pad(img, side, side)
    img = tf.image.resize(tf.cast(img, tf.float32), [image_size, image_size], antialias=True)
    return tf.clip_by_value(img, 0.0, 255.0)


def vgg_normalise(rgb: tf.Tensor) -> tf.Tensor:
    return rgb[..., ::-1] - _BGR_MEANS


def decode_images(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """Batch of encoded images [N] -> VGG16 input [N, size, size, 3]."""
    imgs = tf.map_fn(lambda b: decode_one(b, image_size), _flat(encoded),
                     fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))
    return vgg_normalise(imgs)
