"""`synthdetect ingest` on eval-v1 (in place) plus every kind of bad or unusual input."""
import csv
import io
import json
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers import encode, scene
from tests.helpers import CLI


def unusual_inputs(d: Path) -> dict[str, tuple[bytes | None, str]]:
    """name -> (bytes or None for a missing file, expected reason or 'written')."""
    jpeg, png = encode(scene(1, (300, 200))), encode(scene(2, (300, 200)), "PNG")
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [scene(10 + i, (64, 64)).convert("P") for i in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    bomb = io.BytesIO()
    Image.new("1", (12000, 8000)).save(bomb, "PNG")  # 96 Mpx > Pillow's 89.5 Mpx default limit
    rgba = scene(7).convert("RGBA")
    rgba.putalpha(128)
    return {
        "zero.jpg": (b"", "zero_bytes"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "truncated_jpeg"),
        "truncated.png": (png[: len(png) // 2], "truncated_png"),
        "notes.jpg": (b"%PDF-1.4 not an image", "not_an_image"),
        "bomb.png": (bomb.getvalue(), "too_many_pixels"),
        "missing.jpg": (None, "unreadable_path"),
        "png_named.jpg": (encode(scene(3), "PNG"), "written"),          # extension/format mismatch
        "cmyk.jpg": (encode(scene(4).convert("CMYK")), "written"),
        "gray16.png": (encode(scene(5).convert("I;16"), "PNG"), "written"),
        "gray.png": (encode(scene(6).convert("L"), "PNG"), "written"),
        "palette.png": (encode(scene(8).convert("P"), "PNG"), "written"),
        "alpha.png": (encode(rgba, "PNG"), "written"),
        "rotated.jpg": (encode(scene(9), exif=exif.tobytes()), "written"),
        "animated.gif": (gif.getvalue(), "written"),
    }


@pytest.mark.slow
def test_ingest_eval_v1_plus_bad_inputs(eval_v1, tmp_path):
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    cases = unusual_inputs(bad_dir)
    with open(eval_v1 / "manifest.csv", newline="") as f:
        rows = [{"path": str(eval_v1 / r["path"]), "label": r["label"], "source": r["source"],
                 "generator": r["generator"], "content": r["content"]} for r in csv.DictReader(f)]
    for name, (data, _) in cases.items():
        if data is not None:
            (bad_dir / name).write_bytes(data)
        rows.append({"path": str(bad_dir / name), "label": "real", "source": "bad-inputs"})
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # the rows name eval-v1's files in place, outside the manifest's folder: allow that root explicitly
    out = subprocess.run([CLI, "ingest", "--input", str(manifest), "--output", str(tmp_path / "out"),
                          "--set", f"ingest.allowed_roots=[{eval_v1}]"],
                         capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stderr[-2000:]
    s = json.loads((tmp_path / "out" / "ingest_summary.json").read_text())
    assert s["inputs"] == len(rows) == 842 + len(cases)
    assert s["inputs"] == s["written"] + s["exact_duplicates"] + s["near_duplicates"] + s["quarantined"] + s["skipped"]
    members = {m["path"]: m for m in map(json.loads, (tmp_path / "out" / "members.jsonl").read_text().splitlines())}
    quarantine = {q["path"]: q
                  for q in map(json.loads, (tmp_path / "out" / "quarantine.jsonl").read_text().splitlines())}
    for name, (_, expected) in cases.items():
        m = members[str(bad_dir / name)]
        if expected == "written":
            assert m["status"] == "written", (name, m)
        else:
            assert (m["status"], m["reason"]) == ("quarantined", expected), (name, m)
            assert quarantine[str(bad_dir / name)]["reason"] == expected
    assert len(quarantine) == s["quarantined"]
