"""The packages' imports point one way: orchestrator → trainables / search_spaces → corrotune.

An AST walk over each package's files (imports inside functions count too), and a fresh
interpreter for what ``import corrotune`` pulls in.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "corrotune": {"orchestrator", "trainables", "search_spaces", "benchmarks"},
    "trainables": {"orchestrator", "benchmarks"},
    "search_spaces": {"orchestrator", "benchmarks"},
}
"""Package → the top-level packages its modules must not import."""


def imported_packages(source: str) -> list[tuple[int, str]]:
    """``(line, top-level package)`` of every absolute import in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value.split(".")[0]))
    return found


def test_the_walk_sees_imports_anywhere():
    source = "import os\ndef f():\n    from orchestrator.spec import Study\n    importlib.import_module('trainables.loop')\n"
    assert imported_packages(source) == [(1, "os"), (3, "orchestrator"), (4, "trainables")]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_import(package):
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"no files under {package}/"
    upward = [
        f"{path.relative_to(REPO)}:{line}: imports {top}"
        for path in files
        for line, top in imported_packages(path.read_text())
        if top in FORBIDDEN[package]
    ]
    assert not upward, f"{package}/ must not import {sorted(FORBIDDEN[package])}:\n" + "\n".join(upward)


def test_base_package_imports_neither_torch_nor_ray():
    code = (
        "import sys, corrotune, corrotune.registry, corrotune.files, corrotune.paths, orchestrator.ray_repairs\n"
        "print(sorted(m for m in ('torch', 'ray', 'orchestrator.spec') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
