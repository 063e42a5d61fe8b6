"""Ctrl-C to ``corrotune run``: it exits 130 within 30 s printing the resume command, and
``corrotune resume`` then finishes every trial with each epoch reported exactly once."""

from __future__ import annotations

import csv
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from orchestrator.heartbeat import driver_state
from tests.integration.helpers import cli, kill_session, results

pytestmark = pytest.mark.slow

EPOCHS = 2
STUDY = {
    "name": "ctrlc",
    "trainable": "classifier",
    "data": {"path": "synthetic:corrosion", "synthetic": {"num_images": 40, "image_size": 32}},
    "params": {"backbone": "resnet10t", "pretrained": False, "image_size": 32, "batch_size": 4, "epochs": EPOCHS,
               "artifacts": False, "profile": False},
    "search": {"space": "classifier_basic", "sampler": "random", "num_samples": 2, "seed": 0},
    "objective": {"metric": "val/accuracy", "mode": "max"},
    "scheduler": {"name": "fifo"},
    "resources": {"cpu": 1},
    "max_concurrent_trials": 2,
    "tracking": {"wandb": {"mode": "disabled"}},
    "ray": {"num_cpus": 2},
}


def _trial_dirs(study_dir: Path) -> list[Path]:
    return sorted(p for p in study_dir.glob("classifier_*") if p.is_dir())


def _reported(study_dir: Path) -> bool:
    return any((d / "result.json").is_file() and (d / "result.json").read_text().strip() for d in _trial_dirs(study_dir))


def test_ctrl_c_saves_and_exits_130_with_the_resume_command_then_resume_finishes_every_epoch_once(tmp_path):
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(STUDY))
    study_dir = tmp_path / "results" / STUDY["name"]
    log = tmp_path / "run.log"
    driver = subprocess.Popen(cli("run", "study.yaml", "--storage", "results"), cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=log.open("w"), start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and driver.poll() is None and not _reported(study_dir):
            time.sleep(0.2)
        assert driver.poll() is None, "the study ended before it could be interrupted: " + log.read_text()[-3000:]
        driver.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        code = driver.wait(timeout=60)
        took = time.monotonic() - interrupted
    finally:
        kill_session(driver)
    output = log.read_text()
    assert code == 130, output[-3000:]
    assert took < 30, f"exit took {took:.1f} s"
    assert f"Continue it with: corrotune resume {study_dir}" in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    assert driver_state(study_dir).state == "preempted"

    resumed = subprocess.run(cli("resume", str(study_dir)), cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    trials = _trial_dirs(study_dir)
    assert len(trials) == STUDY["search"]["num_samples"]
    for trial in trials:
        rows = results(trial)
        assert [r["training_iteration"] for r in rows] == list(range(1, EPOCHS + 1)), (trial.name, rows)
        assert [r["epoch"] for r in rows] == list(range(1, EPOCHS + 1)), trial.name
    table = list(csv.DictReader((study_dir / "trials.csv").open()))
    assert len(table) == len(trials) and {row["status"] for row in table} == {"TERMINATED"}, table
    assert {int(float(row["epochs"])) for row in table} == {EPOCHS}, table
    print(f"SIGINT -> exit: {took:.1f} s")
