"""The registry on gs:// against a real GCS HTTP server on localhost (gcp-storage-emulator)."""
import json
import os
import subprocess

import pytest

from components.registry.store import GcsRegistry, open_registry
from tests.conftest import SAMPLE
from tests.tiny_models import tiny_model
from tests.helpers import CLI


@pytest.fixture
def gcs(gcs_emulator):
    return f"gs://{gcs_emulator}/models/synthdetect"


def test_gcs_registry_versions_aliases_and_interrupted_push(gcs, tmp_path):
    model = tiny_model(tmp_path / "sm", "good")
    reg = open_registry(gcs)
    assert isinstance(reg, GcsRegistry) and reg.versions() == []
    assert reg.push(str(model), {"n": 1, "threshold": 0.4, "serving": {"ingest": {}}}) == "v1"

    def die(version):
        raise ConnectionError("network gone after uploading the files")
    with pytest.raises(ConnectionError):
        reg.push(str(model), {"n": 2}, on_staged=die)
    # the half-uploaded v2 has no model.json: invisible, and its number is not reused
    assert reg.versions() == ["v1"] and reg.aliases() == {"latest": "v1", "production": "v1"}
    assert reg.push(str(model), {"n": 3, "threshold": 0.4, "serving": {"ingest": {}}}) == "v3"
    assert reg.versions() == ["v1", "v3"] and reg.aliases() == {"latest": "v3", "production": "v3"}
    assert reg.model_json("production")["n"] == 3
    reg.set_alias("production", "v1")
    assert reg.resolve("production") == "v1"
    local = reg.download("v3", tmp_path / "cache" / "v3")
    assert (local / "saved_model.pb").is_file() and json.loads((local / "model.json").read_text())["n"] == 3

    # the CLI reads the same registry, and predict scores with a version fetched from it
    env = {**os.environ, "SYNTHDETECT_CACHE": str(tmp_path / "cli-cache")}
    out = subprocess.run([CLI, "registry", "list", "--registry", gcs, "--json"], capture_output=True, text=True,
                         timeout=120, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert [v["version"] for v in json.loads(out.stdout)["versions"]] == ["v1", "v3"]
    one = next((SAMPLE / "real").rglob("*.JPEG"))
    out = subprocess.run([CLI, "predict", "--model", "registry:latest", "--registry", gcs, str(one)],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    [row] = [json.loads(x) for x in out.stdout.splitlines()]
    assert row["model_version"] == "v3" and 0 <= row["p_synthesized"] <= 1


def test_gs_models_and_vertex_registries_go_through_one_resolver_and_one_cache(gcs_emulator, tmp_path):
    """`predict --model gs://…` (a Trainer model artifact on GCS, as Vertex runs leave them) and
    `registry:REF` of a vertex:// registry (read through its GCS versions) both score; what they
    fetch lands once under $SYNTHDETECT_CACHE."""
    from components.registry.store import gcs_client
    model = tiny_model(tmp_path / "sm", "good")
    bucket = gcs_client().bucket(gcs_emulator)
    artifact = "pipeline-root/Trainer_vgg16_finetune/model/7"
    for f in sorted(p for p in model.rglob("*") if p.is_file()):
        bucket.blob(f"{artifact}/Format-Serving/{f.relative_to(model).as_posix()}").upload_from_filename(str(f))
    registry = f"gs://{gcs_emulator}/vertex-artifacts"
    open_registry(registry).push(str(model), {"threshold": 0.4, "serving": {"ingest": {}}})
    cache = tmp_path / "cache"
    env = {**os.environ, "SYNTHDETECT_CACHE": str(cache)}
    one = next((SAMPLE / "real").rglob("*.JPEG"))

    def predict(*args: str) -> dict:
        out = subprocess.run([CLI, "predict", *args, str(one)], capture_output=True, text=True, timeout=300,
                             env=env, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        [row] = [json.loads(x) for x in out.stdout.splitlines()]
        assert 0 <= row["p_synthesized"] <= 1
        return row

    row = predict("--model", f"gs://{gcs_emulator}/{artifact}")
    assert row["model_version"] == f"gs://{gcs_emulator}/{artifact}" and row["threshold"] == 0.5
    [copied] = list((cache / "models").iterdir())
    assert (copied / "Format-Serving" / "saved_model.pb").is_file()
    vertex = f"vertex://proj/us-central1/synthdetect?artifacts={registry}"
    row = predict("--model", "registry:production", "--registry", vertex)
    assert (row["model_version"], row["threshold"]) == ("v1", 0.4)
    assert [p.parent.name for p in cache.glob("registry/*/v1/saved_model.pb")] == ["v1"]
    predict("--model", f"gs://{gcs_emulator}/{artifact}")        # the second time from the cache
    assert len(list((cache / "models").iterdir())) == 1


def test_a_gs_model_replaced_at_the_same_path_is_fetched_again(gcs_emulator, tmp_path):
    """Issue 28.8: `predict --model gs://…` copied the model into the cache once and kept scoring with
    that copy after another model was uploaded to the same path. The cache is keyed on the objects'
    generations: a replaced model is fetched again, an unchanged one is not."""
    from components.registry.store import gcs_client
    bucket = gcs_client().bucket(gcs_emulator)
    prefix = "models/detector"

    def upload(kind: str) -> None:
        for b in list(bucket.list_blobs(prefix=prefix + "/")):
            b.delete()
        model = tiny_model(tmp_path / kind, kind)
        for f in sorted(p for p in model.rglob("*") if p.is_file()):
            bucket.blob(f"{prefix}/{f.relative_to(model).as_posix()}").upload_from_filename(str(f))
    env = {**os.environ, "SYNTHDETECT_CACHE": str(tmp_path / "cache")}
    dark = next((SAMPLE / "real").rglob("*.JPEG"))

    def score() -> float:
        out = subprocess.run([CLI, "predict", "--model", f"gs://{gcs_emulator}/{prefix}", str(dark)],
                             capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        return json.loads(out.stdout)["p_synthesized"]
    upload("good")
    first = score()
    assert first != 0.5
    assert score() == first and len(list((tmp_path / "cache" / "models").iterdir())) == 1   # cached
    upload("constant")      # another model at the same path: scores 0.5 for everything
    assert score() == 0.5
