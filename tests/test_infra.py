"""Container images and Terraform, checked without Docker or Google Cloud: the images install exactly
the lock file (the GPU one: the same pins + TensorFlow's CUDA libraries) and this package. And the
local setup: infra/ensure_mongod.sh's decision against real binaries with a missing library."""
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

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


def stages(dockerfile) -> list[list[str]]:
    """The build stages: each a list of instructions starting with its FROM."""
    out: list[list[str]] = []
    for i in instructions(dockerfile):
        if i.startswith("FROM "):
            out.append([])
        if out:
            out[-1].append(i)
    return out


def image_args(dockerfile) -> dict[str, str]:
    return dict(re.findall(r"^ARG ([A-Z_]+_IMAGE)=(\S+)$", dockerfile.read_text(), re.M))


@pytest.mark.parametrize("dockerfile, lock", [(CPU, "requirements.lock"), (GPU, "infra/requirements-gpu.lock")])
def test_images_sync_exactly_one_lock_file_and_install_this_package_without_deps(dockerfile, lock):
    runs = " && ".join(run_lines(dockerfile))
    syncs = re.findall(r"uv pip sync (.*?) (\S+lock)\b", runs)
    assert [path for _, path in syncs] == [f"/synthdetect/{lock}"]
    installs = re.findall(r"(?:uv )?pip install ([^&]+)", runs)
    assert [i.split() for i in installs] == [["--compile-bytecode", "--python", "/opt/venv/bin/python", "--no-deps",
                                              "."]], installs
    copies = [i for i in instructions(dockerfile) if i.startswith("COPY ") and "--from" not in i]
    assert any(lock.split("/")[-1] in c for c in copies)
    # the package's source tree lives where the compiled Vertex spec expects it
    from pipeline.vertex import CONTAINER_SRC
    assert f"WORKDIR {CONTAINER_SRC}" in stages(dockerfile)[-1]
    assert f"COPY --from=build {CONTAINER_SRC} {CONTAINER_SRC}" in stages(dockerfile)[-1]
    copied = {c.split()[1] for c in copies}
    assert {"pipeline", "components", "schemas", "setup.py"} <= copied
    # run_fn / preprocessing_fn are imported by module path in the final image
    final_runs = " ".join(i for i in stages(dockerfile)[-1] if i.startswith("RUN "))
    assert "components.trainer.run_fn" in final_runs and "components.transform.preprocessing" in final_runs


# ---- issue 27.5: hardened images (read from the Dockerfiles: no Docker engine here)
@pytest.mark.parametrize("dockerfile", [CPU, GPU])
def test_images_run_as_a_non_root_user(dockerfile):
    final = stages(dockerfile)[-1]
    users = [i.split()[1] for i in final if i.startswith("USER ")]
    assert users, f"{dockerfile.name}: the final stage has no USER (containers run as root)"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, users   # numeric: runAsNonRoot can verify it
    assert any(f"useradd --uid {uid}" in i for i in final if i.startswith("RUN "))
    # nothing after USER needs root
    assert not [i for i in final[final.index(f"USER {users[-1]}"):] if i.startswith("RUN ")]


@pytest.mark.parametrize("dockerfile", [CPU, GPU])
def test_every_base_image_is_pinned_by_digest(dockerfile):
    args = image_args(dockerfile)
    assert "PYTHON_IMAGE" in args and "UV_IMAGE" in args
    for name, ref in args.items():
        assert re.fullmatch(r"[a-z0-9./_-]+:[\w.-]+@sha256:([0-9a-f]{64}|UNRESOLVED)", ref), (name, ref)
    for i in instructions(dockerfile):
        if i.startswith("FROM "):   # every stage from a pinned ARG, never a bare tag
            assert re.fullmatch(r"FROM \$\{[A-Z_]+_IMAGE\}( AS \w+)?", i), i
        if i.startswith("COPY --from="):
            assert i.split()[1].removeprefix("--from=") in {"uv", "beam", "build"}, i
    text = dockerfile.read_text()
    assert "python:3.10.13-slim-bookworm@" in args["PYTHON_IMAGE"]   # Python 3.10, as the locks were resolved
    if dockerfile == CPU:
        lock = pins(REPO / "requirements.lock")
        assert f"apache/beam_python3.10_sdk:{lock['apache-beam']}@" in args["BEAM_IMAGE"]
        assert 'ENTRYPOINT ["/opt/apache/beam/boot"]' in instructions(CPU)  # usable as Dataflow SDK container
    assert "make pin-images" in text


@pytest.mark.parametrize("dockerfile, lock", [(CPU, "requirements.lock"), (GPU, "infra/requirements-gpu.lock")])
def test_images_install_a_hashed_lock_with_require_hashes(dockerfile, lock):
    runs = " && ".join(run_lines(dockerfile))
    assert re.search(rf"uv pip sync [^&]*--require-hashes [^&]*{re.escape(lock)}", runs)
    text = (REPO / lock).read_text()
    entries = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==\S+ \\\n((?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)",
                         text, re.M)
    assert len(entries) == len(pins(REPO / lock)) > 100   # every pin carries its hashes
    recipe = (REPO / "Makefile").read_text()
    assert f"--generate-hashes -o {lock}" in recipe      # and `make lock` keeps them


@pytest.mark.parametrize("dockerfile", [CPU, GPU])
def test_uv_stays_in_the_build_stage(dockerfile):
    st = stages(dockerfile)
    assert len(st) >= 3, "multi-stage: uv image, build, final"
    final = st[-1]
    assert not [i for i in final if re.search(r"\buv\b", i)], final
    assert "COPY --from=build /opt/venv /opt/venv" in final
    assert any("ENV PATH=/opt/venv/bin:$PATH" in i for i in final)


def test_the_build_context_leaves_out_venv_outputs_and_data():
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    rules = [r.strip() for r in ignore if r.strip() and not r.startswith("#")]
    assert rules[0] == "**"   # everything out, then only what the images copy back in
    allowed = {r[1:] for r in rules if r.startswith("!")}
    for dockerfile in (CPU, GPU):
        for i in instructions(dockerfile):
            if i.startswith("COPY ") and "--from" not in i:
                for src in i.split()[1:-1]:
                    assert src in allowed, f"{dockerfile.name} copies {src}, which .dockerignore leaves out"
    assert not allowed & {".venv", "runs", "registry", "data", ".git", "test-artifacts"}


def test_infra_readme_cites_only_files_that_exist():
    text = (INFRA / "README.md").read_text()
    if "builds submit" in text:
        assert list(REPO.glob("cloudbuild*.yaml")) + list(INFRA.glob("cloudbuild*.yaml")), \
            "infra/README cites a Cloud Build config that does not exist"


def test_pin_images_writes_a_digest_for_every_image_arg():
    """infra/pin_images.py with a given resolver (the registries are not reachable here)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("pin_images", INFRA / "pin_images.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = CPU.read_text()
    asked = []
    pinned = mod.pin(text, lambda ref: asked.append(ref) or "ab" * 32)
    assert sorted(asked) == sorted(r.split("@")[0] for r in image_args(CPU).values())
    assert mod.unresolved(pinned) == [] and pinned.count("@sha256:" + "ab" * 32) == len(asked)
    assert mod.pin(pinned, lambda ref: "cd" * 32).count("cd" * 32) == len(asked)   # re-pins a moved tag
    assert mod.parse_reference("python:3.10.13-slim-bookworm") == ("registry-1.docker.io", "library/python",
                                                                   "3.10.13-slim-bookworm")
    assert mod.parse_reference("ghcr.io/astral-sh/uv:0.13.9") == ("ghcr.io", "astral-sh/uv", "0.13.9")
    assert mod.parse_reference("apache/beam_python3.10_sdk:2.74.0")[:2] == ("registry-1.docker.io",
                                                                            "apache/beam_python3.10_sdk")


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


def test_every_requirement_is_in_the_lock():
    lock = pins(REPO / "requirements.lock")
    for line in (REPO / "requirements.in").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name = re.split(r"[\[<>=!~ ]", line)[0].lower().replace("_", "-")
            assert name in lock, name


# What a production image must not carry: test runners, the Jupyter notebook server, FiftyOne + MongoDB.
# (ipykernel and its jupyter-client / jupyter-core stay: TFMA imports ipywidgets, which imports ipykernel.comm.)
DEV_ONLY = ("pytest", "pytest-timeout", "jupyterlab", "jupyter-server", "jupyter-lsp", "notebook", "nbconvert",
            "nbclient", "fiftyone", "fiftyone-db", "gcp-storage-emulator", "widgetsnbextension")


@pytest.mark.parametrize("lock", ["requirements.lock", "infra/requirements-gpu.lock"])
def test_the_runtime_locks_carry_no_development_tools(lock):
    got = pins(REPO / lock)
    assert not [name for name in got if name in DEV_ONLY or name.startswith(("pytest", "jupyterlab", "jupyter-server",
                                                                              "fiftyone", "notebook"))], lock
    # what ingestion, training and serving import directly is pinned explicitly
    assert {"opencv-python-headless", "pillow", "imagehash", "tensorflow", "tfx", "croniter"} <= set(got)


def test_the_dev_lock_is_the_runtime_lock_plus_development_tools():
    runtime, dev = pins(REPO / "requirements.lock"), pins(REPO / "requirements-dev.lock")
    assert {k: dev.get(k) for k in runtime} == runtime   # resolved with requirements.lock as constraints
    assert {"pytest", "fiftyone", "gcp-storage-emulator"} <= set(dev)
    assert "-r requirements.in" in (REPO / "requirements-dev.in").read_text()
    make = (REPO / "Makefile").read_text()
    lock_recipe = make[make.index("\nlock:"):].split("\n\n")[0]
    for target in ("-o requirements.lock", "-o requirements-dev.lock", "-o infra/requirements-gpu.lock"):
        assert target in lock_recipe   # `make lock` refreshes all three
    assert '"${LOCKS[@]}"' in (INFRA / "bootstrap.sh").read_text() and \
        "LOCKS=(requirements.lock requirements-dev.lock)" in (INFRA / "bootstrap.sh").read_text()


def _imports(path: Path) -> set[str]:
    import ast
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def _module_owners() -> dict[str, list[str]]:
    """Top-level module -> installed distributions (Python 3.10's packages_distributions reads only
    top_level.txt, which many wheels lack: the files in RECORD say it too)."""
    import importlib.metadata
    owners: dict[str, list[str]] = {}
    for dist in importlib.metadata.distributions():
        tops = set((dist.read_text("top_level.txt") or "").split())
        tops |= {f.parts[0] if len(f.parts) > 1 else f.name.split(".")[0] for f in dist.files or []
                 if f.parts and f.parts[0] != ".." and not f.parts[0].endswith((".dist-info", ".data"))
                 and f.suffix in (".py", ".so", "")}
        for top in tops:
            owners.setdefault(top, []).append(dist.metadata["Name"])
    return owners


def test_the_runtime_lock_has_every_distribution_the_runtime_code_imports():
    """Every import in pipeline/, components/ and schemas/ (curation, a development tool, aside) comes
    from a distribution pinned in requirements.lock (names mapped through this .venv's metadata)."""
    import sys
    runtime = set(pins(REPO / "requirements.lock"))
    dists = _module_owners()
    files = [p for d in ("pipeline", "components", "schemas") for p in (REPO / d).rglob("*.py")
             if "curation" not in p.parts and p.name != "curate.py"]
    missing = {}
    for f in files:
        for mod in _imports(f) - set(sys.stdlib_module_names) - {"pipeline", "components", "schemas", "__future__"}:
            names = {n.lower().replace("_", "-") for n in dists.get(mod, [])}
            assert names, f"{f.relative_to(REPO)}: no installed distribution provides {mod!r}"
            if not names & runtime:
                missing.setdefault(mod, []).append(str(f.relative_to(REPO)))
    assert missing == {}


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


# ------------------------------------------------------------------ FiftyOne's mongod (ensure_mongod.sh)
# The script's decision runs against a real binary whose shared library is missing: a tiny program
# linked against a tiny library built here, which is then deleted (ldd prints `not found`). The
# "install" is an executable given by ENSURE_MONGOD_INSTALLER (test-only), which may put the library
# back, do nothing, or fail.
ENSURE_MONGOD = INFRA / "ensure_mongod.sh"
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("ldd") is None,
                               reason="needs gcc and ldd to build a binary with a missing library")


def _build_with_missing_libs(tmp_path, n_libs: int = 1, name_pad: int = 0):
    """A program needing `n_libs` shared libraries that are gone; returns (binary, lib dir, saved
    copies). Each library file's name is its DT_NEEDED entry (no soname)."""
    src, libdir, saved = tmp_path / "src", tmp_path / "lib", tmp_path / "saved"
    for d in (src, libdir, saved):
        d.mkdir()
    (src / "miss.c").write_text("int miss(void) { return 1; }\n")
    (src / "main.c").write_text("int miss(void);\nint main(void) { return miss() - 1; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(saved / "libmiss.so"), str(src / "miss.c")], check=True)
    names = [f"libmiss{'x' * name_pad}{i}.so" for i in range(n_libs)]
    for name in names:
        (libdir / name).symlink_to(saved / "libmiss.so")
    binary = tmp_path / "mongod"
    subprocess.run(["gcc", "-o", str(binary), str(src / "main.c"), f"-L{libdir}", "-Wl,--no-as-needed",
                    *[f"-l:{n}" for n in names], f"-Wl,-rpath,{libdir}"], check=True)
    assert subprocess.run([binary]).returncode == 0  # it runs while the libraries are there
    for name in names:
        (libdir / name).unlink()
    assert "not found" in subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    return binary, libdir, saved


def _installer(tmp_path, body: str) -> tuple[str, Path]:
    """An executable standing in for the apt install; it appends a line to `calls` when run."""
    calls = tmp_path / "install-calls"
    script = tmp_path / f"installer-{hashlib.sha256(body.encode()).hexdigest()[:8]}"
    script.write_text(f"#!/usr/bin/env bash\necho called >> {calls}\n{body}\n")
    script.chmod(0o755)
    return str(script), calls


def _ensure_mongod(binary, installer, script=ENSURE_MONGOD):
    env = {k: v for k, v in os.environ.items() if k != "FIFTYONE_DATABASE_URI"}
    env.update(ENSURE_MONGOD_BIN=str(binary), ENSURE_MONGOD_INSTALLER=installer)
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60)


def _n_calls(calls) -> int:
    return len(calls.read_text().splitlines()) if calls.exists() else 0


@needs_gcc
def test_ensure_mongod_installs_when_a_library_is_missing_and_exits_0_once_it_loads(tmp_path):
    binary, libdir, saved = _build_with_missing_libs(tmp_path)
    installer, calls = _installer(tmp_path, f"cp {saved}/libmiss.so {libdir}/libmiss0.so")  # a working install
    r = _ensure_mongod(binary, installer)
    assert _n_calls(calls) == 1, r.stderr
    assert r.returncode == 0, r.stderr
    assert "mongod loads" in r.stderr


@needs_gcc
def test_ensure_mongod_does_not_install_when_nothing_is_missing(tmp_path):
    binary, libdir, saved = _build_with_missing_libs(tmp_path)
    (libdir / "libmiss0.so").symlink_to(saved / "libmiss.so")
    installer, calls = _installer(tmp_path, "exit 0")
    r = _ensure_mongod(binary, installer)
    assert r.returncode == 0, r.stderr
    assert _n_calls(calls) == 0


@needs_gcc
@pytest.mark.parametrize("body", ["exit 0", "exit 3"], ids=["install-changes-nothing", "install-fails"])
def test_ensure_mongod_fails_loudly_when_the_library_is_still_missing(tmp_path, body):
    binary, _, _ = _build_with_missing_libs(tmp_path)
    installer, calls = _installer(tmp_path, body)
    r = _ensure_mongod(binary, installer)
    assert _n_calls(calls) == 1
    assert r.returncode == 1
    assert "libmiss0.so" in r.stderr or "installing libssl1.1 failed" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("ensure_mongod: ")


@needs_gcc
def test_old_pipe_logic_skipped_the_install_and_the_script_does_not(tmp_path):
    """Documents the bug: `ldd … | grep -q 'not found'` under pipefail. grep exits at the first match;
    when ldd still has output to write (deterministic here: ~400 KB of `not found` lines, more than a
    pipe holds) ldd fails with EPIPE/SIGPIPE, the pipeline fails, and the old script took that as
    "nothing missing" and exited 0 without installing."""
    binary, _, _ = _build_with_missing_libs(tmp_path, n_libs=2000, name_pad=180)
    old_logic = (f"set -euo pipefail\nif ! ldd {binary} | grep -q 'not found'; then echo skipped; exit 0; fi\n"
                 "echo install\n")
    assert subprocess.run(["bash", "-c", old_logic], capture_output=True, text=True).stdout == "skipped\n"
    installer, calls = _installer(tmp_path, "exit 0")
    r = _ensure_mongod(binary, installer)
    assert _n_calls(calls) == 1 and r.returncode == 1


def test_no_early_exiting_reader_in_a_pipeline_of_the_setup_scripts():
    """`cmd | grep -q` (or `| head`, `| grep -m`) under pipefail fails when cmd is still writing."""
    files = [*INFRA.glob("*.sh"), REPO / "Makefile", *(REPO / ".ci").iterdir()]
    early_exit = re.compile(r"\|\s*(grep\s+(-\w*[qm]|--quiet|--max-count)|head\b)")
    offending = [f"{f.relative_to(REPO)}:{i}: {line.strip()}" for f in files if f.is_file()
                 for i, line in enumerate(f.read_text().splitlines(), 1)
                 if not line.lstrip().startswith("#") and early_exit.search(line)]
    assert offending == []


def venv_stamp(locks_and_setup: bytes) -> str:
    """What infra/bootstrap.sh records for a .venv made from these lock files + setup.py by its RECIPE."""
    recipe = re.search(r'^RECIPE="([^"]+)"$', (INFRA / "bootstrap.sh").read_text(), re.M)
    assert recipe, "infra/bootstrap.sh names its RECIPE"
    return hashlib.sha256(locks_and_setup + recipe.group(1).encode() + b"\n").hexdigest()


def test_bootstrap_resyncs_a_venv_made_by_an_older_recipe_with_bytecode_compiled(tmp_path):
    """A .venv stamped by the previous recipe (same locks, no .pyc files) is synced once more, with
    --compile-bytecode on both uv calls, and stamped; the next bootstrap calls uv no more. (A fake `uv`
    on PATH records its calls: nothing is installed.)"""
    import sys
    repo = tmp_path / "repo"
    (repo / "infra").mkdir(parents=True)
    shutil.copy2(INFRA / "bootstrap.sh", repo / "infra" / "bootstrap.sh")
    for name, text in (("requirements.lock", "pins\n"), ("requirements-dev.lock", "dev pins\n"),
                       ("setup.py", "setup\n")):
        (repo / name).write_text(text)
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "python").symlink_to(sys.executable)
    stamp = repo / ".venv" / ".synthdetect-lock.sha256"
    stamp.write_text(hashlib.sha256(b"pins\ndev pins\nsetup\n").hexdigest() + "\n")   # recipe 1: locks + setup.py
    bin_dir, calls = tmp_path / "bin", tmp_path / "uv-calls"
    bin_dir.mkdir()
    (bin_dir / "uv").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (bin_dir / "uv").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:/usr/bin:/bin", "FIFTYONE_DATABASE_URI": "mongodb://127.0.0.1:9"}

    def bootstrap():
        return subprocess.run(["bash", str(repo / "infra" / "bootstrap.sh")], capture_output=True, text=True,
                              timeout=120, env=env)

    r = bootstrap()
    assert r.returncode == 0, r.stderr
    made = calls.read_text().splitlines()
    assert [c.split()[:2] for c in made] == [["pip", "sync"], ["pip", "install"]], made
    assert all("--compile-bytecode" in c.split() for c in made), made
    assert made[0].endswith("requirements.lock requirements-dev.lock") and made[1].endswith("--no-deps -e .")
    assert stamp.read_text().strip() == venv_stamp(b"pins\ndev pins\nsetup\n")
    r = bootstrap()
    assert r.returncode == 0 and calls.read_text().splitlines() == made   # up to date: uv not called


@pytest.mark.parametrize("dockerfile", [CPU, GPU])
def test_images_compile_bytecode_at_build(dockerfile):
    """The containers run as a non-root user with PYTHONDONTWRITEBYTECODE: without .pyc files made at
    build, every step would compile each module it imports at each start."""
    installs = [r for r in run_lines(dockerfile) if re.search(r"\buv pip (sync|install)\b", r)]
    assert len(installs) == 2 and all("--compile-bytecode" in r.split() for r in installs), installs
    # the source tree too: the steps run from it (python -m ..., WORKDIR), not from site-packages
    assert any(re.search(r"python -m compileall -q pipeline components schemas\b", r) for r in run_lines(dockerfile))


@needs_gcc
def test_bootstrap_does_not_record_a_failed_mongod_step_and_retries_it(tmp_path):
    """infra/bootstrap.sh with an up-to-date .venv (a copy of the scripts in a scratch repository):
    a failed mongod step is a warning (exit 0, other work proceeds), is not stamped, and is tried
    again by the next bootstrap; once it succeeds it is stamped and not run again."""
    import sys
    repo = tmp_path / "repo"
    (repo / "infra").mkdir(parents=True)
    for name in ("bootstrap.sh", "ensure_mongod.sh"):
        shutil.copy2(INFRA / name, repo / "infra" / name)
    (repo / "requirements.lock").write_text("pins\n")
    (repo / "requirements-dev.lock").write_text("dev pins\n")
    (repo / "setup.py").write_text("setup\n")
    (repo / ".venv" / "bin").mkdir(parents=True)
    (repo / ".venv" / "bin" / "python").symlink_to(sys.executable)
    want = venv_stamp(b"pins\ndev pins\nsetup\n")
    (repo / ".venv" / ".synthdetect-lock.sha256").write_text(want + "\n")
    (tmp_path / "bin").mkdir()
    binary, libdir, saved = _build_with_missing_libs(tmp_path / "bin")
    env = {k: v for k, v in os.environ.items() if k != "FIFTYONE_DATABASE_URI"}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"

    def bootstrap(installer):
        return subprocess.run(["bash", str(repo / "infra" / "bootstrap.sh")], capture_output=True, text=True,
                              timeout=120, env={**env, "ENSURE_MONGOD_BIN": str(binary),
                                                "ENSURE_MONGOD_INSTALLER": installer})

    stamp = repo / ".venv" / ".synthdetect-mongod.sha256"
    noop, calls = _installer(tmp_path, "exit 0")
    for attempt in (1, 2):
        r = bootstrap(noop)
        assert r.returncode == 0, r.stderr
        assert "warning: FiftyOne's MongoDB is not usable" in r.stderr
        assert _n_calls(calls) == attempt and not stamp.exists()
    fix, _ = _installer(tmp_path, f"cp {saved}/libmiss.so {libdir}/libmiss0.so")
    r = bootstrap(fix)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    assert _n_calls(calls) == 3 and stamp.read_text().strip() == want
    r = bootstrap(noop)
    assert r.returncode == 0 and _n_calls(calls) == 3  # stamped: not run again
