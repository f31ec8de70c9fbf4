"""The Trainer's run_fn outside TFX: export, signatures, no train/serve skew (both input modes),
augmentation policy, crop mode's random training crops and deterministic evaluation/serving."""
import json
import types

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from components.trainer.run_fn import make_dataset, run_fn
from components.transform.preprocessing import decode_images
from schemas.config import PipelineConfig
from pipeline.pipeline import trainer_config
from tests.conftest import SAMPLE
from tests.tiny_models import sample_examples, to_example

SIZE = 32


MODES = {"resize": {}, "crop": {"input_mode": "crop"}, "crop5": {"input_mode": "crop", "eval_crops": 5},
         "crop-npr": {"input_mode": "crop", "input_filter": "npr"}, "highpass": {"input_filter": "highpass"}}


def _train(tmp, model: dict, name: str):
    cfg = PipelineConfig.model_validate({"data": {"input": str(SAMPLE)}, "model": {
        "image_size": SIZE, "epochs": 2, "batch_size": 4, "weights": "none", "deterministic": True, **model}})
    cc = trainer_config(cfg, "baseline")
    fn_args = types.SimpleNamespace(train_files=[str(tmp / "data.gz")], eval_files=[str(tmp / "data.gz")],
                                    transform_output=str(tmp / "transform"), serving_model_dir=str(tmp / name),
                                    model_run_dir=str(tmp / f"run-{name}"), custom_config=cc)
    run_fn(fn_args)
    return tf.saved_model.load(str(tmp / name))


@pytest.fixture(scope="module", params=list(MODES))
def trained(request, transformed):
    """A model trained and exported by run_fn in each input mode (crop5: crop mode, 5 eval crops)."""
    out, path, tmp = transformed
    mode = request.param
    return _train(tmp, MODES[mode], f"serving-{mode}"), out, path, tmp / f"serving-{mode}", mode


def _raw_images() -> list[bytes]:
    return [e["image_raw"][0] for e in sample_examples()]


def test_export_has_both_signatures_and_history(trained):
    model, _, _, serving, mode = trained
    assert {"serving_default", "serving_images"} <= set(model.signatures)
    hist = json.loads((serving / "assets.extra" / "training_history.json").read_text())
    assert hist["variant"] == "baseline" and hist["config"]["weights"] == "none"
    assert hist["config"]["input_mode"] == MODES[mode].get("input_mode", "resize")
    assert len(hist["history"]["loss"]) == 2 and "val_auc" in hist["history"]


def _grid_windows(encoded: bytes, offsets) -> np.ndarray:
    """The VGG16 inputs of the crop grid, cut out of the decoded image with numpy."""
    img = tf.io.decode_image(encoded, channels=3).numpy().astype(np.float32)
    h, w = img.shape[:2]
    wins = [img[(h - SIZE) * r // 2:(h - SIZE) * r // 2 + SIZE, (w - SIZE) * c // 2:(w - SIZE) * c // 2 + SIZE]
            for r, c in offsets]
    return np.stack(wins)[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32)


def test_no_train_serve_skew(trained):
    """The same image through serving_images, through serving_default (tf.Example) and through the
    training input pipeline's evaluation path gives the same model input, hence the same score;
    with eval_crops the served score is the mean over the grid crops."""
    model, out, path, serving, mode = trained
    input_mode = MODES[mode].get("input_mode", "resize")
    input_filter = MODES[mode].get("input_filter", "none")
    keras_model = keras.models.load_model(str(serving))
    ds = make_dataset([path], out.transformed_feature_spec(), SIZE, 12, shuffle=False, seed=0, deterministic=True,
                      input_mode=input_mode, input_filter=input_filter)
    images, _ = next(iter(ds))
    raw = _raw_images()
    served = model.signatures["serving_images"](images=tf.constant(raw))["p_synthesized"].numpy()
    by_example = model.signatures["serving_default"](
        examples=tf.constant([to_example({"image_raw": r, "label_id": 0}) for r in raw]))["p_synthesized"].numpy()
    np.testing.assert_allclose(by_example, served, rtol=1e-5, atol=1e-6)
    # the input tensors of training's evaluation path agree with the serving-side decode
    np.testing.assert_allclose(images.numpy(), decode_images(tf.constant(raw), SIZE, input_mode,
                                                             input_filter=input_filter).numpy(), atol=1e-3)
    if mode == "crop5":
        from components.transform.preprocessing import CROP_GRIDS
        direct = np.array([keras_model(_grid_windows(r, CROP_GRIDS[5]), training=False).numpy().mean() for r in raw])
        np.testing.assert_allclose(served.ravel(), direct, rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_allclose(served, keras_model(images, training=False).numpy(), rtol=1e-4, atol=1e-5)
    if input_mode == "crop":  # native pixels: the evaluation input is the decoded image's centre window
        from components.transform.preprocessing import CROP_GRIDS
        want = np.concatenate([_grid_windows(r, CROP_GRIDS[1]) for r in raw])
        if input_filter == "npr":  # each pixel minus its 2x2 cell's top-left pixel, computed with numpy
            bgr = want + np.array([103.939, 116.779, 123.68], np.float32)
            want = bgr - np.repeat(np.repeat(bgr[:, ::2, ::2], 2, axis=1), 2, axis=2)
        np.testing.assert_allclose(images.numpy(), want, atol=1e-3)


def test_serving_is_deterministic_and_scores_perturbed_and_small_images(trained):
    """What ReleaseCheck and predict do through serving_images works in every mode: the same bytes
    give the same score; JPEG, downscaled, blurred and smaller-than-the-crop images score."""
    from components.scoring.scorer import load_scorer
    from components.release_check.perturb import PERTURBATIONS
    from tests.conftest import image_bytes
    _, _, _, serving, _ = trained
    score = load_scorer(str(serving))
    raw = _raw_images()[:4] + [image_bytes("PNG", size=(20, 12)), image_bytes("JPEG", size=(12, 50))]
    first = score(raw)
    np.testing.assert_array_equal(first, score(raw))
    for fn in PERTURBATIONS.values():
        p = score([fn(r) for r in raw])
        assert p.shape == (len(raw),) and np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()


def test_crop_mode_training_crops_are_native_windows_that_change_every_epoch(transformed):
    out, path, _ = transformed
    spec = out.transformed_feature_spec()
    train = make_dataset([path], spec, SIZE, 12, shuffle=False, seed=0, deterministic=True, training=True,
                         input_mode="crop")
    (e1, _), (e2, _) = next(iter(train)), next(iter(train))  # two epochs of the same dataset
    assert not np.array_equal(e1.numpy(), e2.numpy())
    again = make_dataset([path], spec, SIZE, 12, shuffle=False, seed=0, deterministic=True, training=True,
                         input_mode="crop")
    np.testing.assert_array_equal(e1.numpy(), next(iter(again))[0].numpy())  # reproducible from the seed
    # every training crop is an unresampled SIZE x SIZE window of the decoded image
    for crop, raw in list(zip(e1.numpy(), _raw_images(), strict=False))[:3]:
        img = tf.io.decode_image(raw, channels=3).numpy().astype(np.float32)[..., ::-1] - [103.939, 116.779, 123.68]
        wins = np.lib.stride_tricks.sliding_window_view(img, (SIZE, SIZE, 3))[..., 0, :, :, :]
        assert (np.abs(wins - crop).max(axis=(-3, -2, -1)) < 1e-3).any()
    evals = make_dataset([path], spec, SIZE, 12, shuffle=False, seed=0, deterministic=True, input_mode="crop")
    np.testing.assert_array_equal(next(iter(evals))[0].numpy(), next(iter(evals))[0].numpy())


def test_crop_mode_upscales_images_smaller_than_the_crop_once():
    from tests.conftest import image_bytes
    small = tf.constant([image_bytes("PNG", size=(20, 12)), image_bytes("PNG", size=(64, 16))])
    out = decode_images(small, SIZE, "crop")
    assert out.shape == (2, SIZE, SIZE, 3) and np.isfinite(out.numpy()).all()
    train = decode_images(small, SIZE, "crop", seeds=tf.constant([1, 2], tf.int64), augment_prob=1.0)
    assert train.shape == (2, SIZE, SIZE, 3)
    # a 64x16 image becomes 128x32: the centre crop is its middle half, not the whole image squeezed
    arr = np.zeros((16, 64, 3), np.uint8)
    arr[:, 32:] = 255
    img = decode_images(tf.reshape(tf.io.encode_png(arr), [1]), SIZE, "crop")[0] + [103.939, 116.779, 123.68]
    assert img[:, :14].numpy().max() < 1 and img[:, 18:].numpy().min() > 254


def test_augmentation_hits_both_labels_and_only_training(transformed):
    out, path, _ = transformed
    spec = out.transformed_feature_spec()
    plain = make_dataset([path], spec, SIZE, 12, shuffle=False, seed=0, deterministic=True)
    again = make_dataset([path], spec, SIZE, 12, shuffle=False, seed=0, deterministic=True)
    aug = make_dataset([path], spec, SIZE, 12, shuffle=False, seed=0, deterministic=True, training=True,
                       augment_prob=1.0)
    no_aug = make_dataset([path], spec, SIZE, 12, shuffle=False, seed=0, deterministic=True, training=True)
    (x0, y0), (x1, _), (xa, ya) = next(iter(plain)), next(iter(again)), next(iter(aug))
    np.testing.assert_array_equal(x0.numpy(), x1.numpy())  # evaluation input is deterministic
    np.testing.assert_array_equal(x0.numpy(), next(iter(no_aug))[0].numpy())  # resize mode, augmentation off
    np.testing.assert_array_equal(y0.numpy(), ya.numpy())
    changed = np.abs(xa.numpy() - x0.numpy()).reshape(len(y0), -1).mean(axis=1) > 1.0
    labels = y0.numpy().ravel()
    assert changed[labels == 0].all() and changed[labels == 1].all()
    assert not np.array_equal(xa.numpy(), next(iter(aug))[0].numpy())  # another epoch, other draws


def test_trainer_config_baseline_differs_only_by_weights(tmp_path):
    w = tmp_path / "w.h5"
    w.write_bytes(b"x")
    cfg = PipelineConfig.model_validate({"data": {"input": str(SAMPLE)}, "model": {"weights": str(w)}})
    cand, base = trainer_config(cfg, "vgg16_finetune"), trainer_config(cfg, "baseline")
    assert cand["weights"] == str(w) and base["weights"] == "none"
    assert {k: v for k, v in cand.items() if k not in ("weights", "variant")} == \
        {k: v for k, v in base.items() if k not in ("weights", "variant")}


def test_gaussian_blur_preserves_flat_images_and_smooths_noise():
    from components.transform.preprocessing import _gaussian_blur
    flat = tf.fill([40, 40, 3], 100.0)
    np.testing.assert_allclose(_gaussian_blur(flat, tf.constant(2.0)).numpy(), 100.0, rtol=1e-4)
    noise = tf.random.stateless_uniform([40, 40, 3], seed=[1, 2], maxval=255.0)
    blurred = _gaussian_blur(noise, tf.constant(2.0))
    assert blurred.shape == (40, 40, 3)
    assert float(tf.math.reduce_std(blurred)) < 0.3 * float(tf.math.reduce_std(noise))


def test_run_fn_reads_custom_config_through_model_config():
    """run_fn's settings are ModelConfig's: what trainer_config writes comes back unchanged, missing
    keys take ModelConfig's defaults, and a wrong value fails as it does in the config file."""
    from pydantic import ValidationError

    from components.trainer.run_fn import model_settings
    from schemas.config import ModelConfig
    cfg = PipelineConfig.model_validate({"data": {"input": str(SAMPLE)}, "model": {
        "image_size": SIZE, "epochs": 3, "input_mode": "crop", "eval_crops": 5, "weights": "none"}})
    variant, m = model_settings(json.loads(json.dumps(trainer_config(cfg, "baseline"))))  # as TFX stores it
    assert variant == "baseline" and m == cfg.model
    _, m = model_settings({"variant": "baseline", "epochs": 2})
    assert m.epochs == 2 and m.batch_size == ModelConfig.model_fields["batch_size"].default
    with pytest.raises(ValidationError, match="epochs"):
        model_settings({"variant": "baseline", "epochs": "ten"})
    with pytest.raises(ValueError, match="variant"):
        model_settings({"epochs": 2})


def test_the_serving_folder_is_where_tfx_exports_it(tmp_path):
    """artifact.serving_model_dir names TFX's folder itself (no TensorFlow import for a local path)."""
    from tfx.utils import path_utils

    from components.trainer.artifact import SAVED_MODEL_FILE, serving_model_dir
    assert serving_model_dir(str(tmp_path)) == str(tmp_path)           # no SavedModel under it: itself
    (tmp_path / "Format-Serving").mkdir()
    (tmp_path / "Format-Serving" / SAVED_MODEL_FILE).write_bytes(b"")
    assert serving_model_dir(str(tmp_path)) == path_utils.serving_model_path(str(tmp_path))
