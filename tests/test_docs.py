"""The docs site builds with --strict (no broken links inside docs/) and README's relative links resolve."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def readme_relative_links(text: str) -> list[str]:
    links = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        links.append(target.split("#", 1)[0])
    return [t for t in links if t]


def test_readme_relative_links_resolve():
    missing = [t for t in readme_relative_links((ROOT / "README.md").read_text()) if not (ROOT / t).exists()]
    assert missing == []


def test_link_check_catches_a_broken_link(tmp_path):
    assert readme_relative_links("[a](docs/nope.md) [b](https://x.org) [c](#top)") == ["docs/nope.md"]


def _mkdocs() -> list[str]:
    exe = Path(sys.executable).with_name("mkdocs")
    if exe.exists():
        return [str(exe)]
    if shutil.which("mkdocs"):
        return ["mkdocs"]
    pytest.skip("mkdocs not installed (requirements-dev.lock)")


def test_mkdocs_build_strict(tmp_path):
    out = subprocess.run([*_mkdocs(), "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                          "-d", str(tmp_path / "site")], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "site" / "index.html").exists()
