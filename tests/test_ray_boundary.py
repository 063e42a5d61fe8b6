"""Outside ``orchestrator/ray_repairs/`` no corrotune module imports or touches a private Ray name.

An AST walk over ``corrotune/``, ``orchestrator/`` (less ``ray_repairs/``), ``trainables/``,
``search_spaces/`` and ``benchmarks/`` flags:

* importing a private Ray module (a path part starting with ``_``: ``ray._private``,
  ``ray._raylet``, ``ray.train._internal``, ...), or ``from ray... import _name``;
* ``ray._x`` attribute access on the ``ray`` module itself;
* a Ray private attribute we know corrotune uses (:data:`RAY_PRIVATE_ATTRIBUTES`), as an
  attribute or as a string (``getattr(obj, "_counter")``, an experiment-state JSON key).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKED = ("corrotune", "orchestrator", "trainables", "search_spaces", "benchmarks")
REPAIRS = REPO / "orchestrator" / "ray_repairs"

RAY_PRIVATE_ATTRIBUTES = frozenset({
    # ray.train._internal.checkpoint_manager._CheckpointManager
    "_checkpoint_results", "_checkpoint_config",
    # ray.tune.search.SearchGenerator
    "_counter", "_finished",
    # ray.air.integrations.wandb.WandbLoggerCallback / _WandbLoggingActor
    "_logger_actor_cls", "_remote_logger_class", "_trial_logging_actors", "_trial_logging_futures",
    "_logging_future_to_trial", "_trial_queues", "_exclude_results", "_start_logging_actor",
    "_cleanup_logging_actor", "_cleanup_logging_actors", "_handle_result", "_handle_checkpoint",
    # ray.tune.experiment.Trial.__unresolved_config, name-mangled (and its JSON key)
    "_Trial__unresolved_config",
})
"""Leading-underscore attributes of Ray objects that ``ray_repairs`` uses; nowhere else may."""


def _is_private_ray_module(module: str | None) -> bool:
    parts = (module or "").split(".")
    return parts[0] == "ray" and any(part.startswith("_") for part in parts[1:])


def _rooted_at_ray(node: ast.expr) -> bool:
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name) and node.id == "ray"


def private_ray_uses(source: str, filename: str = "<source>") -> list[str]:
    """``"line: what"`` for each private Ray name ``source`` imports or touches."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names if _is_private_ray_module(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "ray":
            if _is_private_ray_module(node.module):
                found.append(f"{node.lineno}: from {node.module} import ...")
            found += [f"{node.lineno}: from {node.module} import {a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Attribute):
            if node.attr in RAY_PRIVATE_ATTRIBUTES:
                found.append(f"{node.lineno}: .{node.attr}")
            elif node.attr.startswith("_") and not node.attr.startswith("__") and _rooted_at_ray(node.value):
                found.append(f"{node.lineno}: ray...{node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in RAY_PRIVATE_ATTRIBUTES:
            found.append(f"{node.lineno}: {node.value!r}")
    return found


def _checked_files() -> list[Path]:
    files = [p for top in CHECKED for p in sorted((REPO / top).rglob("*.py"))]
    return [p for p in files if REPAIRS not in p.parents]


def test_the_walk_sees_the_packages():
    names = {p.relative_to(REPO).as_posix() for p in _checked_files()}
    assert {"orchestrator/runner.py", "orchestrator/cluster.py", "trainables/loop.py", "corrotune/registry.py"} <= names
    assert not any(n.startswith("orchestrator/ray_repairs/") for n in names)


@pytest.mark.parametrize("snippet, expected", [
    ("from ray._private.state import state", "from ray._private.state import ..."),
    ("import ray._raylet", "import ray._raylet"),
    ("from ray.train._internal.checkpoint_manager import X", "from ray.train._internal.checkpoint_manager import ..."),
    ("from ray.air.integrations.wandb import WandbLoggerCallback, _QueueItem", "import _QueueItem"),
    ("import ray\nray._private.worker.global_worker", "ray..._private"),
    ("manager._checkpoint_results = []", "._checkpoint_results"),
    ("generator._counter = 3", "._counter"),
    ("config = trial.get('_Trial__unresolved_config')", "'_Trial__unresolved_config'"),
])
def test_each_kind_of_private_use_is_caught(snippet, expected):
    found = private_ray_uses(snippet)
    assert found and expected in found[0], found


@pytest.mark.parametrize("snippet", [
    "from ray import tune\nfrom ray.tune.search import ConcurrencyLimiter",
    "import ray\nray.nodes(); ray.__version__",
    "self._items = {}; self._state = None",  # our own privates
    "from orchestrator._trial_errors import summarize_error",
])
def test_public_ray_and_our_own_privates_pass(snippet):
    assert private_ray_uses(snippet) == []


def test_no_private_ray_name_outside_ray_repairs():
    problems = [
        f"{path.relative_to(REPO)}:{use}"
        for path in _checked_files()
        for use in private_ray_uses(path.read_text(), str(path))
    ]
    assert not problems, "private Ray names belong in orchestrator/ray_repairs/ (see docs/ray_repairs.md):\n" + "\n".join(problems)
