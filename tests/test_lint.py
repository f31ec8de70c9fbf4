"""The linters the code is written for: ruff and mypy, configured in pyproject.toml, report nothing
(`make lint` runs the same two commands; CI runs it before the tests)."""
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

VENV_BIN = REPO / ".venv" / "bin"
BIN = VENV_BIN if VENV_BIN.is_dir() else Path(sys.executable).parent


@pytest.mark.parametrize("command", [["ruff", "check", "."], ["mypy"]], ids=["ruff", "mypy"])
def test_linter_is_clean(command):
    tool = BIN / command[0]
    assert tool.exists(), f"{tool} missing: run make bootstrap (requirements-dev.lock pins it)"
    r = subprocess.run([str(tool), *command[1:]], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{' '.join(command)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
