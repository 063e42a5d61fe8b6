"""orchestrator.quiet: Ray's console switches, and the ``--verbose`` / ``--version`` options."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from orchestrator import quiet
from orchestrator.cli import app, versions

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _not_verbose():
    yield
    quiet.set_verbose(False)


def test_a_quiet_run_sets_rays_switches_but_never_overrides_the_users(monkeypatch):
    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    monkeypatch.setenv("RAY_BACKEND_LOG_LEVEL", "debug")  # the user's choice
    quiet.quiet_environment()
    assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0" and os.environ["RAY_BACKEND_LOG_LEVEL"] == "debug"
    assert quiet.ray_init_options() == {"logging_level": logging.ERROR, "log_to_driver": False}
    assert quiet.tune_verbosity() == 0


def test_verbose_leaves_ray_as_it_is(monkeypatch):
    for name in quiet.QUIET_ENV:
        monkeypatch.delenv(name, raising=False)
    quiet.set_verbose(True)
    quiet.quiet_environment()
    assert not [name for name in quiet.QUIET_ENV if name in os.environ]
    assert quiet.ray_init_options() == {"logging_level": logging.INFO, "log_to_driver": True}
    assert quiet.tune_verbosity() == 1


def _stderr_of(verbose: bool) -> str:
    """What a process writes to file descriptor 2 inside ``ray_starting`` (as C++ code would)."""
    script = textwrap.dedent(f"""
        import os
        from orchestrator import quiet
        quiet.set_verbose({verbose})
        try:
            with quiet.ray_starting():
                os.write(2, b"[2026-12-01 22:57:49,609 I 1 1] logging.cc:303: Set ray log level from environment variable RAY_BACKEND_LOG_LEVEL to 3\\n")
                os.write(2, b"a real problem\\n")
                raise RuntimeError("init failed")
        except RuntimeError:
            os.write(2, b"after\\n")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": REPO})
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_ray_starting_holds_back_only_rays_log_level_notice_and_passes_the_rest_on_even_on_error():
    assert _stderr_of(False) == "a real problem\nafter\n"
    assert "logging.cc:303" in _stderr_of(True)


def test_version_names_corrotune_and_what_it_runs_on_without_importing_torch():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == versions()
    from importlib.metadata import version

    for name in ("corrotune", "ray", "optuna", "torch"):
        assert f"{name} {version(name)}" in result.output
    done = subprocess.run([sys.executable, "-c", "import sys; from orchestrator.cli import versions; versions(); print('torch' in sys.modules)"],
                          cwd=REPO, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": REPO})
    assert done.stdout.strip() == "False", done.stderr


def test_verbose_is_a_global_option():
    result = CliRunner().invoke(app, ["--verbose", "validate", "no-such-study.yaml"])
    assert quiet.is_verbose() and result.exit_code != 0
