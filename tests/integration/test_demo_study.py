"""End to end through the CLI: a tiny study runs in Ray, and survives a SIGKILL of its driver."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.helpers import cli, kill_session, not_restarted, results, resume_points

pytestmark = pytest.mark.slow

TINY = [
    "--set", "data.synthetic.num_images=80",
    "--set", "data.synthetic.image_size=32",
    "--set", "params.image_size=32",
    "--set", "params.batch_size=16",
    "--set", "search.num_samples=3",
    "--set", "scheduler.name=fifo",
]


def _epochs(trial_dir: Path) -> list[int]:
    return [r["epoch"] for r in results(trial_dir)]


def _trial_dirs(study_dir: Path) -> list[Path]:
    return sorted(p for p in study_dir.iterdir() if p.is_dir() and p.name.startswith("classifier_"))


def _wandb_run_ids(study_dir: Path) -> set[str]:
    from orchestrator.tracking import logged_steps

    return set(logged_steps(study_dir))


def test_demo_study_runs_end_to_end(tmp_path):
    storage = tmp_path / "results"
    completed = subprocess.run(
        cli("run", str(REPO / "studies/demo.yaml"), "--storage", str(storage), "--set", "params.epochs=2", *TINY),
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    study_dir = storage / "demo"
    trials = _trial_dirs(study_dir)
    assert len(trials) == 3
    for trial in trials:
        assert _epochs(trial) == [1, 2]
        assert sorted(p.name for p in trial.glob("checkpoint_*")), f"no checkpoint in {trial}"
        last = results(trial)[-1]
        for key in ("train/loss", "val/loss", "val/accuracy", "val/f1", "test/accuracy"):
            assert key in last
        assert "model/gflops" in results(trial)[0]
        artifacts = {p.name for p in (trial / "artifacts").glob("*.png")}
        assert {"confusion_matrix.png", "roc.png", "pr.png", "curves.png", "gradcam_000.png"} <= artifacts
        assert list(trial.glob("wandb/offline-run-*/files/media/images/artifacts/confusion_matrix_*.png"))
    assert len(_wandb_run_ids(study_dir)) == len(trials)
    board = json.loads((study_dir / "leaderboard.json").read_text())
    assert board["metric"] == "val/accuracy" and len(board["trials"]) == 3
    bests = [row["best"] for row in board["trials"]]
    assert bests == sorted(bests, reverse=True)
    assert (study_dir / "leaderboard.csv").read_text().startswith("rank,trial_id")
    # the searcher suggested different configs for the three trials
    configs = {json.dumps({k: r[f"config/{k}"] for k in ("lr", "dropout")}) for r in board["trials"]}
    assert len(configs) == 3
    assert "wandb sync" in completed.stderr


def test_resume_after_driver_sigkill_continues_from_checkpoint(tmp_path):
    epochs = 6
    storage = tmp_path / "results"
    study_dir = storage / "demo"
    log = tmp_path / "driver.log"  # a file, not a pipe: a full pipe would block the driver
    driver = subprocess.Popen(
        cli("run", str(REPO / "studies/demo.yaml"), "--storage", str(storage),
             "--set", f"params.epochs={epochs}", "--set", "checkpoints.num_to_keep=1",
             "--set", "data.synthetic.num_images=160", "--set", "data.synthetic.image_size=64",
             "--set", "params.image_size=64", *TINY[4:]),
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log.open("w"), start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.2)
            if study_dir.is_dir() and resume_points(study_dir, epochs):
                break
    finally:
        kill_session(driver)
    # what resume restores from is the state the dead driver left, read now (not the one polled)
    caught = resume_points(study_dir, epochs).values()
    assert caught, "no trial was caught between checkpoints: " + log.read_text()[-3000:]

    completed = subprocess.run(cli("resume", str(study_dir)), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]

    trials = _trial_dirs(study_dir)
    assert len(trials) == 3
    for trial in trials:
        assert _epochs(trial) == list(range(1, epochs + 1)), f"{trial.name} did not run each epoch once"
    # the epoch counter did not restart: the resumed run went on from the recorded checkpoint (or a later one)
    assert not [why for trial_dir, epoch in caught if (why := not_restarted(trial_dir, epoch))]
    assert len(_wandb_run_ids(study_dir)) == len(trials)
    assert json.loads((study_dir / "leaderboard.json").read_text())["trials"][0]["epochs"] == epochs
