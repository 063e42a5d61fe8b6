"""What the driver imports before a study starts: nothing its start does not need.

Each check runs a fresh interpreter. ``import orchestrator.cli`` is what every command pays
(``validate`` included); the runner is what ``run`` pays before Ray starts. The report's
scipy.stats and matplotlib load when a run ends (``orchestrator.runner._finish``); torch, W&B
and Optuna once Ray is up (``build_tuner``, Tune's TensorBoard logger).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

HEAVY = ("torch", "timm", "torchvision", "torchmetrics", "matplotlib", "scipy", "tensorboardX", "wandb", "optuna")


def _loaded(statement: str) -> list[str]:
    code = f"import sys\n{statement}\nprint(sorted(m for m in {HEAVY!r} + ('ray',) if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our own print of a list of names


def test_the_cli_module_imports_neither_ray_nor_torch_nor_the_reports_libraries():
    assert _loaded("import orchestrator.cli") == []


@pytest.mark.parametrize("module", ["orchestrator.runner", "orchestrator.checks"])
def test_the_runner_and_the_checks_load_none_of_the_heavy_libraries(module):
    assert [m for m in _loaded(f"import orchestrator.cli, {module}") if m != "ray"] == []
