import io
import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample"
EVAL_V1 = REPO.parent / "shared" / "data" / "eval-v1"



@pytest.fixture
def eval_v1() -> Path:
    if not (EVAL_V1 / "manifest.csv").is_file():
        pytest.skip(f"reference data not present at {EVAL_V1} (only in the development workspace)")
    return EVAL_V1


def image_bytes(fmt: str = "JPEG", size=(40, 30), mode: str = "RGB", seed: int = 0, **save) -> bytes:
    """A small noisy image encoded in `fmt` (content differs by seed)."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(arr, "RGB")
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, fmt, **save)
    return buf.getvalue()


@pytest.fixture
def make_tree(tmp_path):
    """Writes {relative path: bytes} under tmp_path/data and returns the folder."""
    def _make(files: dict[str, bytes]) -> Path:
        root = tmp_path / "data"
        for rel, data in files.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        return root
    return _make
