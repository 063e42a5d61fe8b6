"""CLI contract: exit code 2 and nothing started for a study that cannot run."""

import subprocess
import sys

import yaml
from typer.testing import CliRunner

from orchestrator.cli import app
from tests.conftest import REPO

DEMO = str(REPO / "studies" / "demo.yaml")
runner = CliRunner()


def test_validate_accepts_the_demo():
    result = runner.invoke(app, ["validate", DEMO, "--set", "search.num_samples=3"])
    assert result.exit_code == 0, result.output
    assert "study 'demo' (classifier, 3 trials)" in result.output


def test_validate_rejects_a_typo_with_exit_code_2():
    result = runner.invoke(app, ["validate", DEMO, "--set", "params.dropuot=0.2"])
    assert result.exit_code == 2
    assert "did you mean 'dropout'?" in result.output


def test_run_with_a_malformed_study_starts_nothing(tmp_path):
    study = yaml.safe_load(open(DEMO))
    study["params"]["epochs"] = "many"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(study))
    storage = tmp_path / "results"
    completed = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", str(path), "--storage", str(storage)],
        capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == 2
    assert "params.epochs" in completed.stderr
    assert not storage.exists()


def test_run_refuses_an_existing_study_directory(tmp_path):
    study_dir = tmp_path / "demo"
    study_dir.mkdir()
    (study_dir / "keep.txt").write_text("earlier results")
    result = runner.invoke(app, ["run", DEMO, "--storage", str(tmp_path)])
    assert result.exit_code == 2
    assert "corrotune resume" in result.output
    assert (study_dir / "keep.txt").read_text() == "earlier results"


def test_resume_of_a_folder_that_is_no_study(tmp_path):
    result = runner.invoke(app, ["resume", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a corrotune study directory" in result.output


def test_resume_refuses_a_study_whose_driver_is_still_running(tmp_path):
    from orchestrator.heartbeat import write_heartbeat
    from orchestrator.spec import load_study

    study_dir = tmp_path / "demo"
    study_dir.mkdir()
    (study_dir / "corrotune_study.yaml").write_text(yaml.safe_dump(load_study(DEMO).model_dump(mode="json")))
    write_heartbeat(study_dir, "running")  # this very process: alive, fresh
    result = runner.invoke(app, ["resume", str(study_dir)])
    assert result.exit_code == 2 and "still running" in result.output
