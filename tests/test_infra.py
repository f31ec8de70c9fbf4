"""Container images and Terraform, checked without Docker or Google Cloud: the images install exactly
the lock file (the GPU one: the same pins + TensorFlow's CUDA libraries) and this package."""
import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO

INFRA = REPO / "infra"
CPU, GPU = INFRA / "Dockerfile", INFRA / "Dockerfile.gpu"


def pins(path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;]+)", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(3)
    return out


def instructions(dockerfile) -> list[str]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def run_lines(dockerfile) -> list[str]:
    return [i for i in instructions(dockerfile) if i.startswith("RUN ")]


@pytest.mark.parametrize("dockerfile, lock", [(CPU, "requirements.lock"), (GPU, "infra/requirements-gpu.lock")])
def test_images_sync_exactly_one_lock_file_and_install_this_package_without_deps(dockerfile, lock):
    runs = " && ".join(run_lines(dockerfile))
    syncs = re.findall(r"uv pip sync --system (\S+)", runs)
    assert syncs == [lock]
    installs = re.findall(r"(?:uv )?pip install ([^&]+)", runs)
    assert [i.split() for i in installs] == [["--system", "--no-deps", "."]], installs
    copies = [i for i in instructions(dockerfile) if i.startswith("COPY ") and "--from" not in i]
    assert any(lock.split("/")[-1] in c for c in copies)
    # the package's source tree lives where the compiled Vertex spec expects it
    from pipeline.vertex import CONTAINER_SRC
    assert f"WORKDIR {CONTAINER_SRC}" in instructions(dockerfile)
    copied = {c.split()[1] for c in copies}
    assert {"pipeline", "components", "schemas", "setup.py"} <= copied
    # run_fn / preprocessing_fn are imported by module path when the image is built
    assert "components.trainer.run_fn" in runs and "components.transform.preprocessing" in runs


def test_every_pin_of_the_lock_is_what_the_images_install():
    lock = pins(REPO / "requirements.lock")
    gpu = pins(INFRA / "requirements-gpu.lock")
    assert len(lock) > 100
    assert {k: gpu.get(k) for k in lock} == lock  # the GPU image: identical pins for every shared package
    extra = set(gpu) - set(lock)
    assert extra and all(name.startswith("nvidia-") for name in extra), extra
    # the GPU variant of the same TensorFlow: tensorflow[and-cuda] at the lock's version
    gpu_in = (INFRA / "requirements-gpu.in").read_text()
    assert f"tensorflow[and-cuda]=={lock['tensorflow']}" in gpu_in and "-r ../requirements.in" in gpu_in
    assert "-c requirements.lock" in gpu_in  # how it was resolved (documented in the file)


def test_image_bases_match_the_lock():
    lock = pins(REPO / "requirements.lock")
    for dockerfile in (CPU, GPU):
        froms = [i for i in instructions(dockerfile) if i.startswith("FROM ")]
        assert froms == ["FROM python:3.10.13-slim-bookworm"], froms  # Python 3.10, as the lock was resolved
    beam = [i for i in instructions(CPU) if "beam_python" in i]
    assert beam and all(f"apache/beam_python3.10_sdk:{lock['apache-beam']}" in i for i in beam)
    assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in instructions(CPU)  # usable as Dataflow SDK container


def test_every_requirement_is_in_the_lock():
    lock = pins(REPO / "requirements.lock")
    for line in (REPO / "requirements.in").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name = re.split(r"[\[<>=!~ ]", line)[0].lower().replace("_", "-")
            assert name in lock, name


TF_DIR = INFRA / "terraform"


def test_terraform_declares_the_resources_with_least_privilege():
    text = "\n".join(p.read_text() for p in sorted(TF_DIR.glob("*.tf")))
    for resource in ("google_storage_bucket", "google_artifact_registry_repository", "google_service_account",
                     "google_project_iam_member", "google_project_service"):
        assert f'resource "{resource}"' in text, resource
    roles = set(re.findall(r'"(roles/[A-Za-z.]+)"', text))
    assert {"roles/aiplatform.user", "roles/dataflow.worker", "roles/dataflow.developer",
            "roles/artifactregistry.reader", "roles/storage.objectAdmin"} <= roles
    assert not roles & {"roles/owner", "roles/editor", "roles/storage.admin", "roles/aiplatform.admin",
                        "roles/iam.serviceAccountAdmin"}, roles
    # storage is granted on the bucket, not the project
    project_roles = re.findall(r'resource "google_project_iam_member".*?\n}\n', text, re.S)
    assert not any("roles/storage" in block for block in project_roles)
    assert "private_key" not in text and "google_service_account_key" not in text  # no keys, ever
    outputs = (TF_DIR / "outputs.tf").read_text()
    for name in ("service_account", "pipeline_root", "image_repository", "dataflow_temp_location"):
        assert f'output "{name}"' in outputs


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_terraform_is_formatted():
    r = subprocess.run(["terraform", "fmt", "-check", "-recursive", str(TF_DIR)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
