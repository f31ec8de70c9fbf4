"""The code's layering, read from the source: components/ never import pipeline/, schemas/ import
neither, there are no import cycles among our modules (imports inside functions count too), and
`python -m pipeline.cli` is the `synthdetect` command."""
import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.helpers import CLI

PACKAGES = ("components", "pipeline", "schemas")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of ours it imports (anywhere in the file)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from a.b import c` imports the module a.b.c when there is one, else names in a.b
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:   # `import a.b.c` of a name inside a.b
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                out.append(sorted(scc))
    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_known_imports():
    graph = import_graph()   # the reader works: known edges are found, lazy ones included
    assert "components.ingest.outputs" in graph["pipeline.artifacts"] | graph["pipeline.runs"]
    assert "pipeline.pipeline" in graph["pipeline.artifacts"]
    assert "components.release_check.component" in graph["pipeline.pipeline"]   # inside create_components


def test_components_never_import_pipeline_and_schemas_import_neither():
    graph = import_graph()
    wrong = sorted(f"{m} -> {t}" for m, targets in graph.items() for t in targets
                   if (m.startswith("components") and t.startswith("pipeline"))
                   or (m.startswith("schemas") and not t.startswith("schemas")))
    assert wrong == []


def test_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _commands(help_text: str) -> list[str]:
    lines = help_text.split("Commands:", 1)[1].strip("\n").split("\n\n", 1)[0].splitlines()  # up to the epilog
    return [line.split()[0] for line in lines if line.startswith("  ") and line.strip()]


def test_python_m_pipeline_cli_is_the_synthdetect_command():
    via_module = subprocess.run([sys.executable, "-m", "pipeline.cli", "--help"], capture_output=True, text=True,
                                cwd=REPO, timeout=120)
    via_script = subprocess.run([CLI, "--help"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert via_module.returncode == via_script.returncode == 0, via_module.stderr + via_script.stderr
    assert via_module.stdout.startswith("Usage: synthdetect ")
    assert _commands(via_module.stdout) == _commands(via_script.stdout)
    assert set(_commands(via_script.stdout)) == {"run", "report", "config", "ingest", "runs", "registry", "predict",
                                                 "curate", "compile", "submit", "schedule"}
    run_help = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--help"], capture_output=True,
                              text=True, cwd=REPO, timeout=120)
    assert run_help.returncode == 0 and "--runner [local|vertex]" in run_help.stdout
