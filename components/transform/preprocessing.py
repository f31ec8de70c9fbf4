"""Preprocessing shared by training and serving (one place, no train/serve skew).

The Transform graph keeps the *encoded* image bytes (decoded 224x224x3 floats would be ~600 KB per
image); `decode_images` turns bytes into the VGG16 input tensor and is called both in the training
tf.data map and inside the exported serving signatures (through `predict_images`).

Two input modes (`model.input_mode`):
  resize  (the paper's) centre square crop of the whole image, antialiased resize to image_size;
          training augmentation adds a random 80-100 % square crop (resized the same way), JPEG
          re-compression, blur and flip.
  crop    native resolution, never resized: training takes a random image_size x image_size crop,
          evaluation and serving the centre crop, or the mean score over a fixed grid of
          `model.eval_crops` crops (5: centre + 4 corners, 9: 3 x 3). An image whose short side is
          below image_size is upscaled once (bilinear, aspect ratio kept) so its short side equals
          image_size, in training and serving alike. The augmentation (JPEG, blur, flip) is the same.

Three input filters (`model.input_filter`), applied after the crop/resize, in the same function, so
training and both serving signatures see the same tensor:
  none      the image, VGG16 "caffe" normalised (the paper).
  npr       Neighboring Pixel Relationships (Tan et al., CVPR 2024, "Rethinking the Up-Sampling
            Operations in CNN-based Generative Network for Generalizable Deepfake Detection"):
            x - up(down(x)) with nearest-neighbour x2, i.e. each pixel minus the top-left pixel of its
            2x2 cell. It exposes the traces a generator's up-sampling decoder leaves and removes
            the content; a constant (or 2x2-block-constant) image gives zeros.
  highpass  three fixed SRM high-pass residuals of the luma (the 5x5 "KV", 3x3 second-order and
            1-D second-order kernels of Fridrich & Kodovsky 2012, as used by Zhou et al., CVPR 2018),
            one per input channel, reflect-padded: zero on constant images.
Residual inputs are fed in 0..255 units (no mean subtraction: they are zero-mean already).

Training randomness is stateless, seeded per image from make_dataset's seed stream (different
every epoch, reproducible from the seed); evaluation and serving are deterministic.
"""
from __future__ import annotations

import tensorflow as tf

IMAGE_KEY = "image_raw"
LABEL_KEY = "label_id"
# Raw features the model needs at serving time (everything else is metadata for slicing).
SERVING_FEATURES = (IMAGE_KEY,)
INPUT_MODES = ("resize", "crop")
INPUT_FILTERS = ("none", "npr", "highpass")
# Evaluation crop grids (crop mode): offsets as halves of the free margin (0: top/left, 1: centre,
# 2: bottom/right), (row, column).
CROP_GRIDS = {1: ((1, 1),),
              5: ((1, 1), (0, 0), (0, 2), (2, 0), (2, 2)),
              9: tuple((r, c) for r in (0, 1, 2) for c in (0, 1, 2))}
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


def _seed(seed: tf.Tensor, k: int) -> tf.Tensor:
    """The k-th stateless seed of one image's seed."""
    return tf.stack([tf.cast(seed, tf.int64), tf.constant(k, tf.int64)])


def _at_least(img: tf.Tensor, image_size: int) -> tf.Tensor:
    """Crop mode: float32 image at native resolution, or, when its short side is below
    `image_size`, upscaled once (bilinear, aspect ratio kept) so that the short side equals it."""
    shape = tf.shape(img)[:2]
    short = tf.reduce_min(shape)

    def up():
        scale = image_size / tf.cast(short, tf.float32)
        new = tf.maximum(tf.cast(tf.math.ceil(tf.cast(shape, tf.float32) * scale), tf.int32), image_size)
        return tf.clip_by_value(tf.image.resize(tf.cast(img, tf.float32), new, method="bilinear"), 0.0, 255.0)
    return tf.cond(short < image_size, up, lambda: tf.cast(img, tf.float32))


def decode_one(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """Resize mode: encoded JPEG/PNG/GIF/BMP bytes -> float32 [size, size, 3] RGB in 0..255.

    Centre-crop to a square, then resize: the same for both classes, aspect ratio kept."""
    img = _decode_uint8(encoded)
    shape = tf.shape(img)
    side = tf.minimum(shape[0], shape[1])
    return _resize(tf.image.resize_with_crop_or_pad(img, side, side), image_size)


def crop_grid(encoded: tf.Tensor, image_size: int, crops: int = 1) -> tf.Tensor:
    """Crop mode, evaluation and serving: the fixed grid of `crops` native-resolution crops
    (1: the centre crop) -> float32 [crops, size, size, 3] RGB in 0..255."""
    img = _at_least(_decode_uint8(encoded), image_size)
    shape = tf.shape(img)
    free_h, free_w = shape[0] - image_size, shape[1] - image_size
    return tf.stack([tf.image.crop_to_bounding_box(img, free_h * r // 2, free_w * c // 2, image_size, image_size)
                     for r, c in CROP_GRIDS[crops]])


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


def _uniform(seed: tf.Tensor, k: int, lo: float = 0.0, hi: float = 1.0) -> tf.Tensor:
    return tf.random.stateless_uniform([], _seed(seed, k), lo, hi)


def train_one(encoded: tf.Tensor, seed: tf.Tensor, image_size: int, input_mode: str,
              augment_prob: float | None) -> tf.Tensor:
    """One training input -> float32 [size, size, 3] RGB in 0..255, random from `seed` (stateless).

    resize mode: without augmentation the evaluation input; with it, a random square crop of
    80-100 % of the short side resized like the evaluation input (a native-resolution crop would
    train on unresampled pixels the model never sees when served).
    crop mode: a random native-resolution crop (always; it is the input, not an augmentation).
    Augmentation against the format/resize shortcuts (Wang et al. 2020), training only and the same
    for both classes: JPEG re-compression (quality 30-100) with probability `augment_prob`, then the
    crop, horizontal flip, Gaussian blur (sigma 0-3) with probability `augment_prob`."""
    augment = augment_prob is not None
    if input_mode == "resize" and not augment:
        return decode_one(encoded, image_size)
    img = _decode_uint8(encoded)
    if augment:
        img = tf.cond(_uniform(seed, 0) < augment_prob,
                      lambda: tf.image.stateless_random_jpeg_quality(img, 30, 100, _seed(seed, 1)), lambda: img)
    if input_mode == "crop":
        img = tf.image.stateless_random_crop(_at_least(img, image_size), [image_size, image_size, 3], _seed(seed, 2))
    else:
        shape = tf.shape(img)
        short = tf.minimum(shape[0], shape[1])
        crop = tf.maximum(tf.cast(tf.cast(short, tf.float32) * _uniform(seed, 3, 0.8, 1.0), tf.int32), 1)
        img = _resize(tf.image.stateless_random_crop(img, tf.stack([crop, crop, 3]), _seed(seed, 2)), image_size)
    if not augment:
        return img
    img = tf.image.stateless_random_flip_left_right(img, _seed(seed, 4))
    sigma = _uniform(seed, 5, 0.0, 3.0)
    img = tf.cond(tf.logical_and(_uniform(seed, 6) < augment_prob, sigma > 0.1),
                  lambda: _gaussian_blur(img, sigma), lambda: img)
    return tf.clip_by_value(img, 0.0, 255.0)


def vgg_normalise(rgb: tf.Tensor) -> tf.Tensor:
    return rgb[..., ::-1] - _BGR_MEANS


def npr(rgb: tf.Tensor) -> tf.Tensor:
    """[N, H, W, C] -> x - nearest_up_x2(x[:, ::2, ::2]): each pixel minus its 2x2 cell's top-left
    pixel (odd sizes: the last row/column forms its own cell)."""
    shape = tf.shape(rgb)
    cells = tf.repeat(tf.repeat(rgb[:, ::2, ::2], 2, axis=1), 2, axis=2)[:, :shape[1], :shape[2]]
    return rgb - cells


# SRM kernels (Fridrich & Kodovsky 2012; Zhou et al. 2018): each sums to 0, so constant regions give 0.
_SRM = [[[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]],
        [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]],
        [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]]
_SRM_SCALE = (4.0, 12.0, 2.0)
_LUMA = tf.constant([0.299, 0.587, 0.114], dtype=tf.float32)


def highpass(rgb: tf.Tensor) -> tf.Tensor:
    """[N, H, W, 3] RGB -> [N, H, W, 3]: the three SRM residuals of the luma (reflect padding)."""
    luma = tf.reduce_sum(rgb * _LUMA, axis=-1, keepdims=True)
    padded = tf.pad(luma, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="REFLECT")
    kernels = [[[v / scale for v in row] for row in kern] for kern, scale in zip(_SRM, _SRM_SCALE, strict=True)]
    k = tf.constant(kernels, tf.float32)
    return tf.nn.conv2d(padded, tf.transpose(k, [1, 2, 0])[:, :, None, :], 1, "VALID")


def model_input(rgb: tf.Tensor, input_filter: str = "none") -> tf.Tensor:
    """Cropped/resized RGB images [N, size, size, 3] in 0..255 -> the network's input."""
    if input_filter == "none":
        return vgg_normalise(rgb)
    if input_filter == "npr":
        return npr(rgb)[..., ::-1]  # BGR like the normalised input (pretrained first layer's order)
    if input_filter == "highpass":
        return highpass(rgb)
    raise ValueError(f"input_filter must be one of {INPUT_FILTERS}, got {input_filter!r}")


def decode_images(encoded: tf.Tensor, image_size: int, input_mode: str = "resize", *, seeds: tf.Tensor | None = None,
                  augment_prob: float | None = None, crops: int = 1, input_filter: str = "none") -> tf.Tensor:
    """Batch of encoded images [N] -> VGG16 input [N * crops, size, size, 3] (image-major), through
    `input_filter` (see the module docstring).

    `seeds` ([N] int64, one per image) given: training input (random crop in crop mode, and the
    augmentation when `augment_prob` is set). Otherwise evaluation/serving: deterministic, with
    `crops` grid crops per image in crop mode (resize mode: 1)."""
    if input_mode not in INPUT_MODES:
        raise ValueError(f"input_mode must be one of {INPUT_MODES}, got {input_mode!r}")
    if input_filter not in INPUT_FILTERS:
        raise ValueError(f"input_filter must be one of {INPUT_FILTERS}, got {input_filter!r}")
    if crops not in CROP_GRIDS or (crops != 1 and (input_mode != "crop" or seeds is not None)):
        raise ValueError(f"crops={crops}: evaluation grids {tuple(CROP_GRIDS)} exist in crop mode only")
    out_spec = tf.TensorSpec([image_size, image_size, 3], tf.float32)
    if seeds is not None:
        imgs = tf.map_fn(lambda a: train_one(a[0], a[1], image_size, input_mode, augment_prob),
                         (_flat(encoded), _flat(seeds)), fn_output_signature=out_spec)
    elif input_mode == "crop":
        imgs = tf.map_fn(lambda b: crop_grid(b, image_size, crops), _flat(encoded),
                         fn_output_signature=tf.TensorSpec([crops, image_size, image_size, 3], tf.float32))
        imgs = tf.reshape(imgs, [-1, image_size, image_size, 3])
    else:
        imgs = tf.map_fn(lambda b: decode_one(b, image_size), _flat(encoded), fn_output_signature=out_spec)
    return model_input(imgs, input_filter)


def predict_images(model, encoded: tf.Tensor, image_size: int, input_mode: str = "resize",
                   crops: int = 1, input_filter: str = "none") -> tf.Tensor:
    """What the serving signatures compute: p_synthesized [N, 1], the mean over the image's crops."""
    p = model(decode_images(encoded, image_size, input_mode, crops=crops, input_filter=input_filter), training=False)
    return tf.reduce_mean(tf.reshape(tf.cast(p, tf.float32), [-1, crops]), axis=1, keepdims=True)
