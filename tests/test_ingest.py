import io
import json

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline
from PIL import Image

from components.ingest.executor import QUARANTINE_FILE, SUMMARY_FILE, ImagesToExample, pack_options
from components.ingest.images import ImageInput, IngestOptions, InputError, decode_file, list_inputs
from tests.conftest import image_bytes


def feat(ex, name):
    f = ex.features.feature[name]
    return f.bytes_list.value[0].decode() if f.HasField("bytes_list") else f.int64_list.value[0]


def decode(data: bytes, name="x.jpg", opts=IngestOptions()):
    return decode_file(ImageInput(path=name, label="real"), opts, data=data)


def test_folder_layout_labels_and_sources(make_tree):
    root = make_tree({"real/imagenet/a.jpg": image_bytes(), "real/b.jpg": image_bytes(seed=1),
                      "synthesized/sd/c.png": image_bytes("PNG"), "README.md": b"docs",
                      "synthesized/sd/README.md": b"docs"})
    items = {i.path.split("/data/")[1]: i for i in list_inputs(str(root))}
    assert set(items) == {"real/imagenet/a.jpg", "real/b.jpg", "synthesized/sd/c.png"}
    assert (items["real/imagenet/a.jpg"].label, items["real/imagenet/a.jpg"].source) == ("real", "imagenet")
    assert items["real/b.jpg"].source == "unknown"
    assert items["synthesized/sd/c.png"].label == "synthesized"


def test_eval_v1_manifest_works_as_is(eval_v1):
    items = list_inputs(str(eval_v1 / "manifest.csv"))
    assert len(items) == 842
    assert {i.label for i in items} == {"real", "synthesized"}
    assert all(i.path.startswith(str(eval_v1)) for i in items)
    # a folder holding a manifest is read through the manifest (metadata kept)
    assert {i.content for i in list_inputs(str(eval_v1))} >= {"animals", "objects"}


def test_bad_manifest_and_empty_folder_are_input_errors(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\na.jpg,fake\n")
    with pytest.raises(InputError, match="row 2 has label 'fake'"):
        list_inputs(str(tmp_path / "m.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images under"):
        list_inputs(str(tmp_path / "empty"))


def test_neutralised_output_is_one_codec_and_bounded_size():
    kind, ex = decode(image_bytes("PNG", size=(600, 300)), "x.png", IngestOptions(max_side=128, quality=90))
    assert kind == "ok"
    out = Image.open(io.BytesIO(ex.features.feature["image_raw"].bytes_list.value[0]))
    assert out.format == "JPEG" and max(out.size) == 128 and out.size == (128, 64)
    assert (feat(ex, "orig_format"), feat(ex, "orig_width"), feat(ex, "orig_height"), feat(ex, "codec")) == \
        ("PNG", 600, 300, "JPEG")
    assert feat(ex, "label_id") == 0


def test_raw_mode_keeps_published_bytes():
    data = image_bytes("PNG")
    kind, ex = decode(data, "x.png", IngestOptions(neutralize_format=False))
    assert kind == "ok" and ex.features.feature["image_raw"].bytes_list.value[0] == data


@pytest.mark.parametrize("data, reason", [
    (b"", "zero_bytes"),
    (b"this is not an image at all", "not_an_image"),
    (image_bytes("JPEG", size=(200, 200))[:-600], "truncated_jpeg"),
    (image_bytes("PNG", size=(200, 200))[:-600], "truncated_png"),
])
def test_bad_files_are_quarantined_with_a_reason(data, reason):
    kind, rec = decode(data)
    assert kind == "quarantine" and rec["reason"] == reason and rec["path"] == "x.jpg"


def test_pixel_limit_and_unreadable_path():
    kind, rec = decode(image_bytes(size=(100, 100)), opts=IngestOptions(max_pixels=5000))
    assert (kind, rec["reason"]) == ("quarantine", "too_many_pixels")
    kind, rec = decode_file(ImageInput(path="/no/such/file.jpg", label="real"), IngestOptions())
    assert (kind, rec["reason"]) == ("quarantine", "unreadable_path")


@pytest.mark.parametrize("fmt, mode, save", [("JPEG", "CMYK", {}), ("PNG", "I;16", {}), ("PNG", "L", {}),
                                             ("PNG", "LA", {}), ("PNG", "P", {}), ("GIF", "P", {}),
                                             ("WEBP", "RGB", {})])
def test_unusual_modes_are_converted_to_rgb(fmt, mode, save):
    kind, ex = decode(image_bytes(fmt, mode=mode, **save), "x." + fmt.lower())
    assert kind == "ok", ex
    img = tf.io.decode_image(ex.features.feature["image_raw"].bytes_list.value[0], channels=3)
    assert img.shape == (30, 40, 3)
    assert feat(ex, "orig_mode") == mode


def test_extension_mismatch_is_recorded_not_rejected():
    kind, ex = decode(image_bytes("PNG"), "looks_like.jpg")
    assert kind == "ok" and feat(ex, "ext_mismatch") == 1 and feat(ex, "orig_format") == "PNG"


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes())
    kind, ex = decode(buf.getvalue())
    out = Image.open(io.BytesIO(ex.features.feature["image_raw"].bytes_list.value[0]))
    assert kind == "ok" and out.size == (20, 40)


def test_animated_gif_keeps_first_frame_and_says_so():
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    kind, ex = decode(buf.getvalue(), "a.gif")
    assert kind == "ok" and feat(ex, "animated") == 1
    px = Image.open(io.BytesIO(ex.features.feature["image_raw"].bytes_list.value[0])).convert("RGB").getpixel((10, 10))
    assert px[0] > 200 and px[2] < 60


def test_beam_transform_accounts_for_every_file(make_tree, tmp_path):
    root = make_tree({"real/a.jpg": image_bytes(seed=1), "real/b.png": image_bytes("PNG", seed=2),
                      "synthesized/c.png": image_bytes("PNG", seed=3), "synthesized/empty.png": b"",
                      "synthesized/junk.jpg": b"junk"})
    report = tmp_path / "report"
    report.mkdir()
    from google.protobuf import json_format
    props = {"input_base": str(root), "_synthdetect_report_dir": str(report),
             "custom_config": json_format.MessageToJson(pack_options({"max_side": 64}))}
    out_dir = tmp_path / "out"
    with TestPipeline() as p:
        (p | ImagesToExample(props, "*")
           | beam.Map(lambda ex: ex.SerializeToString())
           | beam.io.WriteToTFRecord(str(out_dir / "ex"), num_shards=1))
    summary = json.loads((report / SUMMARY_FILE).read_text())
    assert summary["inputs"] == 5 and summary["written"] == 3 and summary["quarantined"] == 2
    assert summary["accounted_for"] is True
    assert summary["quarantine_reasons"] == {"not_an_image": 1, "zero_bytes": 1}
    assert summary["written_by_label"] == {"real": 2, "synthesized": 1}
    assert summary["options"]["max_side"] == 64
    lines = [json.loads(l) for l in (report / QUARANTINE_FILE).read_text().splitlines()]
    assert sorted(l["path"].rsplit("/", 1)[1] for l in lines) == ["empty.png", "junk.jpg"]
    written = list(tf.data.TFRecordDataset(str(next(out_dir.glob("ex*")))))
    assert len(written) == 3
