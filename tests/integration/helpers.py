"""Driving the CLI as a user would, killing its driver, and reading what Ray saved."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", *args]


def kill_session(process: subprocess.Popen) -> None:
    """SIGKILLs the driver, then whatever of its Ray session survives (only what we started)."""
    process.kill()
    process.wait()
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def saved_trials(study_dir: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(trial, run metadata)`` of each trial in Ray's newest experiment state ([] while none or mid-write)."""
    states = sorted(study_dir.glob("experiment_state-*.json"))
    if not states:
        return []
    try:
        trial_data = json.loads(states[-1].read_text())["trial_data"]
    except (OSError, ValueError, KeyError):
        return []
    return [(json.loads(trial), json.loads(run)) for trial, run in trial_data]


def checkpointed(trial: dict[str, Any], run: dict[str, Any]) -> int:
    """The epoch of the checkpoint the saved state would resume a trial from (0: none).

    That is the latest checkpoint in the trial's checkpoint manager, not the one its last result
    names: Ray records a result before it registers the result's checkpoint, and a state saved
    in between resumes the trial from the checkpoint before.
    """
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    manager = _TrainingRunMetadata.from_json_state(json.dumps(run)).checkpoint_manager
    latest = manager.latest_checkpoint_result if manager else None
    return latest.metrics.get("epoch", 0) if latest is not None and latest.checkpoint is not None else 0


def results(trial_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]


def resume_points(study_dir: Path, epochs: int) -> dict[str, tuple[Path, int]]:
    """``trial_id → (trial folder, checkpoint epoch)`` of each running trial that the saved state
    would resume from a checkpoint with epochs left to run (``0 < epoch < epochs``).

    Read it after the driver is dead: that state is the one ``resume`` restores from. A trial
    whose checkpoint is its last epoch has nothing left to report, and one read while the driver
    still runs may be out of date by the time it is killed.
    """
    points = {}
    for trial, run in saved_trials(study_dir):
        epoch = checkpointed(trial, run)
        if trial["status"] == "RUNNING" and 0 < epoch < epochs:
            points[trial["trial_id"]] = (study_dir / trial["relative_logdir"], epoch)
    return points


def not_restarted(trial_dir: Path, epoch: int) -> str | None:
    """Why the trial did not go on from its checkpoint at ``epoch`` (None: it did).

    Every result after ``epoch`` must come from a run resumed at ``epoch`` or later; a run that
    restarted from scratch reports ``resumed_from_epoch`` 0.
    """
    after = [(r["epoch"], r["resumed_from_epoch"]) for r in results(trial_dir) if r["epoch"] > epoch]
    if not after:
        return f"{trial_dir.name}: no result after its checkpoint at epoch {epoch}"
    if min(resumed for _, resumed in after) < epoch:
        return f"{trial_dir.name}: (epoch, resumed_from_epoch) after its checkpoint at epoch {epoch}: {after}"
    return None
