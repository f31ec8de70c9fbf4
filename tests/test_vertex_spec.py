"""The compiled Vertex spec of configs/vertex.yaml, by its meaning, against tests/golden/vertex_spec.json:
the pipeline's parameters (types, defaults), every task (its dependencies, inputs, outputs, image,
command, executor class, Beam args, pre-cache hook) and every component definition. JSON inside
strings (exec properties, the config the RuntimeParameters step gets) is parsed, so only formatting
may differ; executor labels and component names derived from the task ids are not compared.

After an intended change of the spec: `python -m tests.test_vertex_spec --write`, and say in the
commit what changed."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.helpers import CLI, REPO

VERTEX = REPO / "configs" / "vertex.yaml"
GOLDEN = REPO / "tests" / "golden" / "vertex_spec.json"
# ImageExampleGen's DirectRunner parallelism (one worker process per core, components/ingest/job.py)
# is part of its Beam args: the machine's core count is not part of the spec's meaning
_CORES = (re.compile(r"--direct_num_workers=\d+"), "--direct_num_workers=<cores>"), \
         (re.compile(r"--direct_running_mode=(multi_processing|in_memory)"), "--direct_running_mode=<by cores>")


def _parsed(value):
    """`value` with every string that holds a JSON object or list replaced by its content."""
    if isinstance(value, dict):
        return {k: _parsed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_parsed(v) for v in value]
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            return _parsed(json.loads(value))
        except ValueError:
            return value
    return value


def _machine_free(args: list[str]) -> list[str]:
    out = []
    for a in args:
        for pattern, text in _CORES:
            a = pattern.sub(text, a)
        out.append(a)
    return out


def _container(container: dict) -> dict:
    c = dict(container)
    args = list(c.pop("args", []))
    executor = None
    if "--executor_class_path" in args:
        i = args.index("--executor_class_path")
        executor = args[i + 1]
        del args[i:i + 2]
    out = {"executor": executor, "args": _machine_free(args), **c}
    hook = c.get("lifecycle", {}).get("preCacheCheck")
    if hook is not None:
        out["lifecycle"] = {**c["lifecycle"], "preCacheCheck": {**hook, "args": _machine_free(hook.get("args", []))}}
    return out


def semantics(job: dict) -> dict:
    """The meaning of a compiled pipeline job (see the module docstring)."""
    ps = job["pipelineSpec"]
    rc = job.get("runtimeConfig", {})
    declared = ps["root"].get("inputDefinitions", {}).get("parameters", {})
    defaults = rc.get("parameters", {})
    tasks = {}
    used = set()
    for name, task in ps["root"]["dag"]["tasks"].items():
        ref = task["componentRef"]["name"]
        used.add(ref)
        component = dict(ps["components"][ref])
        label = component.pop("executorLabel")
        assert task.get("taskInfo", {}).get("name") == name, name
        rest = {k: v for k, v in task.items() if k not in ("componentRef", "taskInfo", "dependentTasks")}
        tasks[name] = {
            "depends_on": sorted(task.get("dependentTasks", [])),
            **_parsed(rest),
            "definition": _parsed(component),
            "container": _parsed(_container(ps["deploymentSpec"]["executors"][label]["container"])),
        }
    return {
        "pipeline": {"name": ps["pipelineInfo"]["name"], "display_name": job.get("displayName"),
                     "labels": job.get("labels"), "schema_version": ps.get("schemaVersion"),
                     "sdk_version": ps.get("sdkVersion"), "output_directory": rc.get("gcsOutputDirectory")},
        "parameters": {name: {"type": p.get("type") or p.get("parameterType"), "default": defaults.get(name)}
                       for name, p in declared.items()},
        "tasks": tasks,
        "unused_components": sorted(set(ps["components"]) - used),
        "root_other": sorted(set(ps["root"]) - {"dag", "inputDefinitions"}),
    }


def compile_spec(out: Path) -> dict:
    r = subprocess.run([CLI, "compile", "--config", str(VERTEX), "--out", str(out)], capture_output=True, text=True,
                       timeout=900, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(out.read_text())


def _diff(want, got, path: str = "") -> list[str]:
    """The places where two semantics differ (for a readable failure)."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = []
        for k in sorted(set(want) | set(got)):
            if k not in got:
                out.append(f"{path}/{k}: missing")
            elif k not in want:
                out.append(f"{path}/{k}: new: {json.dumps(got[k])[:200]}")
            else:
                out += _diff(want[k], got[k], f"{path}/{k}")
        return out
    if want != got:
        return [f"{path}: {json.dumps(want)[:200]} -> {json.dumps(got)[:200]}"]
    return []


def test_the_compiled_vertex_spec_means_what_the_golden_file_says(vertex_spec):
    got = semantics(json.loads(vertex_spec.read_text()))
    want = json.loads(GOLDEN.read_text())
    assert got == want, "\n".join(_diff(want, got)[:40])


def test_semantics_ignore_formatting_but_not_values():
    job = {"displayName": "p", "labels": {}, "runtimeConfig": {"parameters": {"n": {"intValue": "1"}}},
           "pipelineSpec": {"pipelineInfo": {"name": "p"}, "root": {
               "inputDefinitions": {"parameters": {"n": {"type": "INT"}}},
               "dag": {"tasks": {"A": {"componentRef": {"name": "A"}, "taskInfo": {"name": "A"}, "inputs": {
                   "parameters": {"x": {"runtimeValue": {"constantValue": {"stringValue": '{"a": 1, "b": [2]}'}}}}}}}}},
               "components": {"A": {"executorLabel": "A_executor"}},
               "deploymentSpec": {"executors": {"A_executor": {"container": {
                   "image": "i", "args": ["--executor_class_path", "m.E", "--direct_num_workers=7"]}}}}}}
    base = semantics(job)
    assert base["tasks"]["A"]["container"] == {"executor": "m.E", "args": ["--direct_num_workers=<cores>"],
                                               "image": "i"}
    reformatted = json.loads(json.dumps(job))
    reformatted["pipelineSpec"]["root"]["dag"]["tasks"]["A"]["inputs"]["parameters"]["x"]["runtimeValue"][
        "constantValue"]["stringValue"] = '{\n  "b": [2],\n  "a": 1\n}'
    reformatted["pipelineSpec"]["components"] = {"A": {"executorLabel": "other_label"}}
    reformatted["pipelineSpec"]["deploymentSpec"]["executors"] = {
        "other_label": job["pipelineSpec"]["deploymentSpec"]["executors"]["A_executor"]}
    assert semantics(reformatted) == base
    changed = json.loads(json.dumps(job))
    changed["pipelineSpec"]["root"]["dag"]["tasks"]["A"]["inputs"]["parameters"]["x"]["runtimeValue"][
        "constantValue"]["stringValue"] = '{"a": 2, "b": [2]}'
    assert semantics(changed) != base


if __name__ == "__main__":   # python -m tests.test_vertex_spec --write: the golden file from this code
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.test_vertex_spec --write")
    with tempfile.TemporaryDirectory() as tmp:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(semantics(compile_spec(Path(tmp) / "pipeline.json")), indent=1, sort_keys=True)
                          + "\n")
    print(f"wrote {GOLDEN.relative_to(REPO)}")
