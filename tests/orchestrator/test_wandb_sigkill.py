"""A real driver SIGKILL: after ``Tuner.restore`` every W&B run still holds each step exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orchestrator._wandb_history import offline_run_dirs, read_offline_run
from orchestrator.tracking import logged_steps
from tests.conftest import REPO

pytestmark = pytest.mark.slow

EPOCHS = 8
SHORT = 4
"""The eca trial's epochs: it finishes just before the kill, maybe before W&B wrote its last rows."""

DRIVER = textwrap.dedent(
    f"""
    import json, sys, tempfile, time
    from pathlib import Path
    import ray
    from ray import tune
    from orchestrator.spec import load_study
    from orchestrator.tracking import wandb_callback

    def trainable(config):
        start = 0
        if tune.get_checkpoint():
            with tune.get_checkpoint().as_directory() as folder:
                start = json.loads(Path(folder, "state.json").read_text())["epoch"]
        epochs = {EPOCHS} if config["corrotune"]["cell"] == "attention=none" else {SHORT}
        for epoch in range(start + 1, epochs + 1):
            time.sleep(0.8 if epoch <= {SHORT} else 2.0)  # the long trial's last epochs outlast the kill
            with tempfile.TemporaryDirectory() as folder:
                Path(folder, "state.json").write_text(json.dumps({{"epoch": epoch}}))
                tune.report({{"val/accuracy": epoch / 10, "epoch": epoch}}, checkpoint=tune.Checkpoint.from_directory(folder))
            Path(config["progress"], f"{{tune.get_context().get_trial_id()}}-{{epoch}}").touch()

    storage, action, progress = sys.argv[1:4]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    if action == "run":
        study = load_study({str(REPO / "studies" / "demo.yaml")!r})
        meta = [{{"cell": f"attention={{a}}", "factors": {{"attention": a}}, "phase": "search", "repeat": None, "study": "demo"}}
                for a in ("eca", "none")]
        tuner = tune.Tuner(
            trainable, param_space={{"corrotune": tune.grid_search(meta), "progress": progress}},
            run_config=tune.RunConfig(name="demo", storage_path=storage, callbacks=[wandb_callback(study, "offline")], verbose=0),
        )
    else:
        tuner = tune.Tuner.restore(storage + "/demo", trainable=trainable, resume_unfinished=True)
    tuner.fit()
    """
)


def _epochs(trial_dir: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (trial_dir / "result.json").read_text().splitlines()]


def _started_runs(study_dir: Path) -> list[Path]:
    """The trials' offline W&B runs that have written their transaction log."""
    return [run for run in study_dir.glob("*/wandb/offline-run-*") if any(run.glob("run-*.wandb"))]


def test_runs_stay_whole_after_a_driver_sigkill(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    storage, study_dir = tmp_path / "results", tmp_path / "results" / "demo"
    log, progress = tmp_path / "driver.log", tmp_path / "progress"
    progress.mkdir()
    driver = subprocess.Popen(
        [sys.executable, str(script), str(storage), "run", str(progress)], cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=log.open("w"), start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.2)
            # the short trial reported its last epoch: the kill hits while its run is being finished,
            # and the long trial's run has begun (a loaded machine starts W&B late)
            if len(list(progress.glob(f"*-{SHORT}"))) == 2 and len(_started_runs(study_dir)) == 2:
                time.sleep(0.3)
                break
    finally:
        driver.kill()
        driver.wait()
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert driver.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    assert not list(progress.glob(f"*-{EPOCHS}")), "the long trial finished before the kill"

    resumed = subprocess.run(
        [sys.executable, str(script), str(storage), "restore", str(progress)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    steps = logged_steps(study_dir)
    report = {
        trial.name[:24]: ([(read_offline_run(f).steps, read_offline_run(f).exit_code) for f in offline_run_dirs(trial)], _epochs(trial))
        for trial in study_dir.iterdir() if trial.is_dir()
    }
    assert len(steps) == 2, report
    assert sorted(steps.values()) == [list(range(1, n + 1)) for n in (SHORT, EPOCHS)], report
    trial_dirs = [p for p in study_dir.iterdir() if p.is_dir()]
    assert sorted(_epochs(trial_dir)[-1] for trial_dir in trial_dirs) == [SHORT, EPOCHS], report
    # the long trial was cut off, and its run went on in a second folder
    assert max(len(offline_run_dirs(trial_dir)) for trial_dir in trial_dirs) == 2, report
