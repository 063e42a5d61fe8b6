"""A Ray outside the tested range stops ``corrotune run``/``resume`` before anything starts, unless forced."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from orchestrator import runner
from orchestrator.ray_repairs import version
from orchestrator.ray_repairs.version import ALLOW_UNTESTED_ENV, TESTED_RAY, UntestedRayError, check_ray_version
from orchestrator.spec import StudyError, load_study
from tests.conftest import REPO


def test_the_installed_ray_is_a_tested_one():
    assert check_ray_version() is None, f"ray {version.installed_ray_version()} is outside {TESTED_RAY}"


@pytest.mark.parametrize("tested", ["2.60.0", "2.60.3"])
def test_patch_releases_of_the_tested_minor_pass(tested, monkeypatch):
    monkeypatch.delenv(ALLOW_UNTESTED_ENV, raising=False)
    assert check_ray_version(tested) is None


@pytest.mark.parametrize("untested", ["2.61.0", "2.59.1", "3.0.0", "2.61.0rc1", "not-a-version"])
def test_an_untested_ray_is_refused_with_both_versions_and_the_way_round(untested, monkeypatch):
    monkeypatch.delenv(ALLOW_UNTESTED_ENV, raising=False)
    with pytest.raises(UntestedRayError) as caught:
        check_ray_version(untested)
    message = str(caught.value)
    assert f"ray {untested} is installed" in message and str(TESTED_RAY) in message
    assert f"{ALLOW_UNTESTED_ENV}=1" in message


def test_forced_it_runs_with_a_warning(monkeypatch):
    monkeypatch.setenv(ALLOW_UNTESTED_ENV, "1")
    warning = check_ray_version("2.61.0")
    assert warning.startswith("warning:") and "2.61.0" in warning and "running anyway" in warning


def _study(tmp_path):
    return load_study(REPO / "studies" / "demo.yaml", [f"storage={tmp_path}"])


def test_run_stops_before_anything_exists(monkeypatch, tmp_path):
    monkeypatch.delenv(ALLOW_UNTESTED_ENV, raising=False)
    monkeypatch.setattr(version, "installed_ray_version", lambda: "2.61.0")
    study = _study(tmp_path)
    with pytest.raises(StudyError, match="ray 2.61.0 is installed"):
        runner.run_study(study, storage=tmp_path, console=Console(file=io.StringIO()))
    assert list(tmp_path.iterdir()) == []  # no study folder, no Ray started
    with pytest.raises(StudyError, match=ALLOW_UNTESTED_ENV):
        runner.resume_study(tmp_path / study.name, console=Console(file=io.StringIO()))


def test_forced_run_goes_on_after_the_warning(monkeypatch, tmp_path):
    monkeypatch.setenv(ALLOW_UNTESTED_ENV, "1")
    monkeypatch.setattr(version, "installed_ray_version", lambda: "2.61.0")

    class Started(Exception):
        pass

    def stop_here(*args, **kwargs):  # the next step of run_study: the version check let it through
        raise Started

    monkeypatch.setattr(runner.StudyPlace, "create", stop_here)
    out = io.StringIO()
    with pytest.raises(Started):
        runner.run_study(_study(tmp_path), storage=tmp_path, console=Console(file=out, width=300))
    assert "warning: ray 2.61.0 is installed" in out.getvalue()
