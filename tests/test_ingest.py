import io
import json

import pytest
import tensorflow as tf
from PIL import Image

from components.ingest.images import decode_file
from components.ingest.listing import ImageInput, InputError, apply_feedback, list_inputs, read_feedback
from schemas.config import IngestConfig
from tests.conftest import image_bytes


def feat(ex, name):
    f = ex.features.feature[name]
    return f.bytes_list.value[0].decode() if f.HasField("bytes_list") else f.int64_list.value[0]


def decode(data: bytes, name="x.jpg", opts=None):
    kind, payload = decode_file(ImageInput(path=name, label="real"), opts or IngestConfig(), data=data)
    return kind, (payload.example if kind == "ok" else payload)


def test_folder_layout_labels_and_sources(make_tree):
    root = make_tree({"real/imagenet/a.jpg": image_bytes(), "real/b.jpg": image_bytes(seed=1),
                      "synthesized/sd/c.png": image_bytes("PNG"), "README.md": b"docs",
                      "synthesized/sd/README.md": b"docs"})
    listing = list_inputs(str(root))
    items = {i.path.split("/data/")[1]: i for i in listing.items}
    assert set(items) == {"real/imagenet/a.jpg", "real/b.jpg", "synthesized/sd/c.png"}
    # documentation next to the images is recorded as skipped, not silently dropped
    assert {(r["path"].split("/data/")[1], r["status"], r["reason"]) for r in listing.rejected} == {
        ("README.md", "skipped", "documentation"), ("synthesized/sd/README.md", "skipped", "documentation")}
    assert (items["real/imagenet/a.jpg"].label, items["real/imagenet/a.jpg"].source) == ("real", "imagenet")
    assert items["real/b.jpg"].source == "unknown"
    assert items["synthesized/sd/c.png"].label == "synthesized"


def test_eval_v1_manifest_works_as_is(eval_v1):
    listing = list_inputs(str(eval_v1 / "manifest.csv"))
    items = listing.items
    assert len(items) == 842 and not listing.rejected
    assert {i.label for i in items} == {"real", "synthesized"}
    assert all(i.path.startswith(str(eval_v1)) for i in items)
    # a folder holding a manifest is read through the manifest (metadata kept)
    assert {i.content for i in list_inputs(str(eval_v1)).items} >= {"animals", "objects"}


def test_bad_manifest_and_empty_folder_are_input_errors(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\na.jpg,fake\n")
    with pytest.raises(InputError, match="line 2 has label 'fake'"):
        list_inputs(str(tmp_path / "m.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images under"):
        list_inputs(str(tmp_path / "empty"))


def test_neutralised_output_is_one_codec_and_bounded_size():
    kind, ex = decode(image_bytes("PNG", size=(600, 300)), "x.png", IngestConfig(max_side=128, quality=90))
    assert kind == "ok"
    out = Image.open(io.BytesIO(ex.features.feature["image_raw"].bytes_list.value[0]))
    assert out.format == "JPEG" and max(out.size) == 128 and out.size == (128, 64)
    assert (feat(ex, "orig_format"), feat(ex, "orig_width"), feat(ex, "orig_height"), feat(ex, "codec")) == \
        ("PNG", 600, 300, "JPEG")
    assert feat(ex, "label_id") == 0


def test_max_side_0_keeps_native_size_and_still_neutralises():
    for fmt in ("PNG", "JPEG"):
        kind, ex = decode(image_bytes(fmt, size=(600, 300)), f"x.{fmt.lower()}", IngestConfig(max_side=0))
        assert kind == "ok"
        out = Image.open(io.BytesIO(ex.features.feature["image_raw"].bytes_list.value[0]))
        assert out.format == "JPEG" and out.size == (600, 300) and feat(ex, "codec") == "JPEG"


def test_raw_mode_keeps_published_bytes():
    data = image_bytes("PNG")
    kind, ex = decode(data, "x.png", IngestConfig(neutralize_format=False))
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
    kind, rec = decode(image_bytes(size=(100, 100)), opts=IngestConfig(max_pixels=5000))
    assert (kind, rec["reason"]) == ("quarantine", "too_many_pixels")
    kind, rec = decode_file(ImageInput(path="/no/such/file.jpg", label="real"), IngestConfig())
    assert (kind, rec["reason"]) == ("quarantine", "unreadable_path")


def test_feedback_excludes_and_relabels(tmp_path, make_tree):
    root = make_tree({"real/a.jpg": image_bytes(), "real/b.jpg": image_bytes(seed=1)})
    fb = tmp_path / "feedback.jsonl"
    fb.write_text(json.dumps({"path": str(root / "real/a.jpg"), "action": "exclude"}) + "\n"
                  + json.dumps({"path": str(root / "real/b.jpg"), "action": "relabel", "label": "synthesized"}) + "\n")
    listing = apply_feedback(list_inputs(str(root)), read_feedback(str(fb)))
    assert [(i.path.rsplit("/", 1)[1], i.label) for i in listing.items] == [("b.jpg", "synthesized")]
    assert [(e["path"].rsplit("/", 1)[1], e["status"], e["reason"]) for e in listing.rejected] == [
        ("a.jpg", "quarantined", "curator_excluded")]
    fb.write_text('{"path": "x", "action": "delete"}\n')
    with pytest.raises(InputError, match="line 1 needs path and action"):
        read_feedback(str(fb))


def test_feedback_follows_the_images_by_content_after_a_move(tmp_path, make_tree):
    """Issue 27.2: feedback exported at one path matched nothing at another (a clone, a moved
    bucket): 0 excluded, no warning. Decisions name the content (sha256; size as the hint for where
    to look) and follow the files; what matches nothing is counted."""
    import hashlib
    files = {"real/a.jpg": image_bytes(seed=1), "real/b.jpg": image_bytes(seed=2),
             "synthesized/c.png": image_bytes("PNG", seed=3), "synthesized/d.png": image_bytes("PNG", seed=4)}
    root = make_tree(files)                    # the images now; the curator tagged them under /old/place

    def decision(rel: str, action: str, **extra) -> dict:
        data = files[rel]
        return {"path": f"/old/place/{rel}", "action": action, "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data), **extra}
    moved_renamed = decision("synthesized/c.png", "exclude")
    moved_renamed["path"] = "/old/place/synthesized/renamed.png"            # found by size + content
    no_size = decision("real/b.jpg", "relabel", label="synthesized")
    del no_size["size"]                                                     # found by file name + content
    gone = {**decision("real/a.jpg", "exclude"), "sha256": "0" * 64}        # no input has that content
    changed = {"path": str(root / "synthesized/d.png"), "action": "exclude",  # at its path, other content
               "sha256": "1" * 64}
    fb = tmp_path / "feedback.jsonl"
    fb.write_text("".join(json.dumps(r) + "\n" for r in (moved_renamed, no_size, gone, changed)))
    listing = apply_feedback(list_inputs(str(root)), read_feedback(str(fb)))
    labels = {i.path.rsplit("/", 1)[1]: i.label for i in listing.items}
    assert labels == {"a.jpg": "real", "b.jpg": "synthesized", "d.png": "synthesized"}
    assert [(e["path"].rsplit("/", 1)[1], e["reason"]) for e in listing.rejected] == [("c.png", "curator_excluded")]
    fbs = listing.feedback
    assert (fbs["entries"], fbs["by_path"], fbs["by_content"], fbs["excluded"], fbs["relabeled"]) == (4, 0, 2, 1, 1)
    assert fbs["unmatched"] == 2 and fbs["unmatched_paths"] == sorted([gone["path"], changed["path"]])
    # a decision at its own path with its own content applies by path
    fb.write_text(json.dumps({**decision("real/a.jpg", "exclude"), "path": str(root / "real/a.jpg")}) + "\n")
    listing = apply_feedback(list_inputs(str(root)), read_feedback(str(fb)))
    assert listing.feedback["by_path"] == 1 and listing.feedback["unmatched"] == 0
    fb.write_text('{"path": "x", "action": "exclude", "sha256": "XYZ"}\n')
    with pytest.raises(InputError, match="sha256 must be 64 lowercase hex digits"):
        read_feedback(str(fb))


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


def test_big_endian_16bit_tiff_is_converted():
    img = Image.new("I;16B", (40, 30))
    buf = io.BytesIO()
    img.save(buf, "TIFF")
    kind, ex = decode(buf.getvalue(), "x.tif")
    assert kind == "ok", ex
    assert feat(ex, "orig_mode") == "I;16B"


def test_files_outside_label_folders_are_an_error_not_dropped(make_tree):
    root = make_tree({"real/a.jpg": image_bytes(), "synthetic/b.png": image_bytes("PNG"), "README.md": b"x"})
    with pytest.raises(InputError, match="1 files .* outside real/ and synthesized/ \\(synthetic/\\)"):
        list_inputs(str(root))


def test_manifest_rows_bom_numeric_labels_and_uris(tmp_path):
    (tmp_path / "a.jpg").write_bytes(image_bytes())
    (tmp_path / "m.csv").write_bytes("\ufeffpath,label\na.jpg,real\ngs://bucket/b.png,synthesized\n".encode())
    listing = list_inputs(str(tmp_path / "m.csv"))
    assert [i.path for i in listing.items] == [str(tmp_path / "a.jpg")]
    # a gs:// row outside the manifest's folder (and every allowed root) is recorded, never read
    assert [(r["path"], r["reason"]) for r in listing.rejected] == [("gs://bucket/b.png", "outside_root")]
    (tmp_path / "m.jsonl").write_text('{"path": "a.jpg", "label": 1}\n')
    with pytest.raises(InputError, match="line 1 has label 1"):
        list_inputs(str(tmp_path / "m.jsonl"))
    (tmp_path / "n.jsonl").write_text('["a.jpg", "real"]\n')
    with pytest.raises(InputError, match="line 1 needs 'path' and 'label'"):
        list_inputs(str(tmp_path / "n.jsonl"))
    with pytest.raises(InputError, match="cannot read"):
        read_feedback(str(tmp_path / "missing.jsonl"))
