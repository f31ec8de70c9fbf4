"""Output that automation reads (issue 27, item 10): piped tables at full width, `--json` on the
commands that change state, one error code per kind of failure in `predict`'s lines."""
import io
import json
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from components.registry.store import LocalRegistry
from tests.tiny_models import tiny_model
from tests.helpers import CLI


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    # a long location, as a CI workspace has: at 80 columns rich cut the table's columns
    root = tmp_path_factory.mktemp("output") / ("a-rather-long-workspace-folder-name-" * 3) / "registry"
    reg = LocalRegistry(root)
    model = tiny_model(root.parent / "sm", "good")
    for run in ("run-2026-12-05T04:00:00-first", "run-2026-12-05T05:00:00-second"):
        reg.push(str(model), {"model_name": "tiny", "threshold": 0.3, "pipeline": {"run_id": run},
                              "created_at": "2026-12-05T04:00:00+00:00",
                              "metrics": {"candidate": {"binary_accuracy": 0.95, "auc": 0.99}},
                              "data": {"fingerprint": "sha256:" + "ab" * 32}})
    return root


def test_a_piped_registry_list_is_one_full_line_per_version(registry, tmp_path):
    proc = _cli("registry", "list", "--registry", str(registry), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.lstrip("│| ").startswith("v")]
    assert len(rows) == 2, proc.stdout
    assert "latest,production" in rows[1] and "run-2026-12-05T05:00:00-second" in rows[1], proc.stdout
    assert str(registry) in proc.stdout          # the title's path, not cut or split over lines
    assert "\x1b[" not in proc.stdout            # plain: no colour codes in a pipe
    assert max(map(len, proc.stdout.splitlines())) > 80


def test_registry_promote_prints_json_with_the_previous_version(registry, tmp_path):
    proc = _cli("registry", "promote", "v1", "--registry", str(registry), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"registry": str(registry), "alias": "production", "version": "v1",
                                       "previous": "v2", "changed": True}
    proc = _cli("registry", "promote", "v1", "--registry", str(registry), cwd=tmp_path)
    assert proc.stdout.strip() == "production -> v1"
    assert LocalRegistry(registry).aliases()["production"] == "v1"


def test_predict_error_lines_carry_one_code_and_the_detail_apart(registry, tmp_path):
    import numpy as np
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)).save(buf, "JPEG")
    (tmp_path / "ok.jpg").write_bytes(buf.getvalue())
    (tmp_path / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) * 3 // 4])
    (tmp_path / "text.png").write_bytes(b"not an image at all")
    (tmp_path / "empty.jpg").write_bytes(b"")
    proc = _cli("predict", "--model", "registry:v1", "--registry", str(registry), str(tmp_path / "ok.jpg"),
                str(tmp_path / "truncated.jpg"), str(tmp_path / "text.png"), str(tmp_path / "empty.jpg"),
                str(tmp_path / "missing.jpg"), cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr
    rows = {Path(r["path"]).name: r for r in map(json.loads, proc.stdout.splitlines())}
    assert "error" not in rows["ok.jpg"]
    codes = {name: r["error"] for name, r in rows.items() if "error" in r}
    assert codes == {"truncated.jpg": "truncated_jpeg", "text.png": "not_an_image", "empty.jpg": "zero_bytes",
                     "missing.jpg": "not_found"}
    assert "OSError" in rows["truncated.jpg"]["error_detail"]   # the message, beside the code
    assert all(":" not in c and " " not in c for c in codes.values())
