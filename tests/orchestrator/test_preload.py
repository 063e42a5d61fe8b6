"""orchestrator._preload: the driver's next imports run beside ray.init, and change nothing else."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from orchestrator import _preload
from orchestrator._preload import DRIVER_MODULES, preloaded

REPO = Path(__file__).resolve().parents[2]


def test_the_block_runs_while_the_modules_import_and_they_are_loaded_when_it_ends(monkeypatch):
    started, release = threading.Event(), threading.Event()
    seen = []

    def slow_import(name):
        started.set()
        release.wait(10)
        seen.append(name)

    monkeypatch.setattr(_preload.importlib, "import_module", slow_import)
    with preloaded(["a", "b"]):
        assert started.wait(10), "the imports did not start beside the block"
        assert seen == []  # the block is not held up by them
        release.set()
    assert seen == ["a", "b"]  # and they are finished when it ends
    assert not any(t.name == "corrotune-preload" for t in threading.enumerate())


def test_a_module_that_fails_to_import_is_left_to_the_drivers_own_import():
    with preloaded(["corrotune_no_such_module", "json"]):
        pass
    assert "corrotune_no_such_module" not in sys.modules


def test_an_error_in_the_block_still_waits_for_the_thread_and_propagates():
    try:
        with preloaded(["json"]):
            raise KeyError("ray.init failed")
    except KeyError as error:
        assert "ray.init failed" in str(error)
    assert not any(t.name == "corrotune-preload" for t in threading.enumerate())


def test_every_preloaded_module_exists_and_starting_the_runtime_loads_them_around_ray_init():
    """The list names real modules (a renamed one would silently cost the saving), and
    ``_start_runtime`` has them imported by the time it returns, without importing them itself first."""
    code = (
        "import sys\n"
        "import orchestrator.runner as runner\n"
        "from orchestrator._preload import DRIVER_MODULES\n"
        "before = [m for m in DRIVER_MODULES if m in sys.modules]\n"
        "runner._init_ray = lambda study, address: None\n"
        "from orchestrator.spec import load_study\n"
        "runner._start_runtime(load_study('studies/demo.yaml', []))\n"
        "print(before, [m for m in DRIVER_MODULES if m not in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "WANDB_MODE": "offline"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] []", out.stdout + out.stderr
    assert "tensorboardX" in DRIVER_MODULES
