"""An ablation study SIGKILLed at the start, mid-search and mid-confirm, resumed each time.

After the last resume: every planned trial finished exactly once, each cell ran the same
number of search and confirm trials, every trial's results are whole, no trial with a recorded
checkpoint restarted from epoch 0, and W&B has one offline run per trial whose steps go
1..epochs without gaps or repeats.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import pytest
import yaml

from orchestrator.ray_repairs.atomic_fs import TMP_SUFFIX
from tests.integration.helpers import checkpointed, cli, kill_session, not_restarted, results, resume_points, saved_trials

pytestmark = pytest.mark.slow

EPOCHS = 4
STUDY = {
    "name": "abl",
    "trainable": "noop",
    "data": {"path": "synthetic:corrosion", "synthetic": {"num_images": 40, "image_size": 32}},
    "params": {"epochs": EPOCHS},
    "ablation": {"factors": {"sleep_s": [0.3, 0.5]}, "repeats": 2, "first_seed": 1},
    "search": {"space": "noop", "sampler": "tpe", "num_samples": 3, "seed": 0},
    "objective": {"metric": "score", "mode": "max"},
    "scheduler": {"name": "asha", "grace_period": 2},
    "resources": {"cpu": 1},
    "max_concurrent_trials": 2,
    "checkpoints": {"num_to_keep": 1},
    "tracking": {"wandb": {"mode": "offline"}},
    "ray": {"num_cpus": 2},
}
PLANNED = 2 * (3 + 2)


def _phase(trial: dict) -> str:
    return trial["config"]["corrotune"]["phase"]


def _running_with_checkpoint(phase: str) -> Callable[[list], bool]:
    def ready(saved: list) -> bool:
        return any(t["status"] == "RUNNING" and _phase(t) == phase and 0 < checkpointed(t, r) < EPOCHS for t, r in saved)
    return ready


def _started(saved: list) -> bool:
    return bool(saved)


def _mid_search(saved: list) -> bool:
    done = sum(t["status"] == "TERMINATED" and _phase(t) == "search" for t, _ in saved)
    return done >= 1 and _running_with_checkpoint("search")(saved)


def _drive(args: list[str], study_dir: Path, tmp_path: Path, ready: Callable[[list], bool] | None):
    """Runs the CLI; with ``ready``, SIGKILLs it once Ray's saved state satisfies it.

    Returns the :func:`resume_points` of the state the killed driver left behind.
    """
    log = tmp_path / f"driver-{time.monotonic_ns()}.log"
    if ready is None:
        done = subprocess.run(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log.open("w"), timeout=600)
        assert done.returncode == 0, log.read_text()[-4000:]
        return []
    driver = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=log.open("w"), start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and driver.poll() is None:
            saved = saved_trials(study_dir) if study_dir.is_dir() else []
            if ready(saved):
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the kill point was never reached: " + log.read_text()[-3000:])
    finally:
        kill_session(driver)
    return list(resume_points(study_dir, EPOCHS).values())


def test_sigkill_at_start_mid_search_and_mid_confirm_then_resume(tmp_path):
    from orchestrator.tracking import logged_steps

    study_file = tmp_path / "abl.yaml"
    study_file.write_text(yaml.safe_dump(STUDY))
    storage = tmp_path / "results"
    study_dir = storage / "abl"

    recorded = _drive(cli("run", str(study_file), "--storage", str(storage)), study_dir, tmp_path, _started)
    recorded += _drive(cli("resume", str(study_dir)), study_dir, tmp_path, _mid_search)
    recorded += _drive(cli("resume", str(study_dir)), study_dir, tmp_path, _running_with_checkpoint("confirm"))
    _drive(cli("resume", str(study_dir)), study_dir, tmp_path, None)

    saved = saved_trials(study_dir)
    assert len(saved) == PLANNED and all(t["status"] == "TERMINATED" for t, _ in saved)
    plan = Counter((t["config"]["corrotune"]["cell"], _phase(t)) for t, _ in saved)
    assert plan == {(f"sleep_s={s}", p): n for s in (0.3, 0.5) for p, n in (("search", 3), ("confirm", 2))}
    trial_dirs = {study_dir / t["relative_logdir"] for t, _ in saved}
    assert {p for p in study_dir.glob("noop_*")} == trial_dirs  # strays went to unrecorded_trials/
    assert not list(study_dir.rglob(f"*{TMP_SUFFIX}"))  # no partly written file left behind

    for trial, _ in saved:
        records = results(study_dir / trial["relative_logdir"])
        epochs = [r["epoch"] for r in records]
        stopped_early = _phase(trial) == "search" and epochs and epochs[-1] < EPOCHS
        assert epochs == list(range(1, len(epochs) + 1)) and (stopped_early or len(epochs) == EPOCHS), trial["trial_id"]
        if _phase(trial) == "confirm":
            assert trial["config"]["seed"] in (1, 2)
    assert recorded, "no kill caught a trial between checkpoints"
    # each trial caught between checkpoints went on from its recorded checkpoint (or a later one), not from 0
    assert not [why for trial_dir, epoch in recorded if (why := not_restarted(trial_dir, epoch))]

    steps = logged_steps(study_dir)
    assert set(steps) == {t["trial_id"] for t, _ in saved}  # one W&B run per trial, id = trial id
    for trial, _ in saved:
        epochs = len(results(study_dir / trial["relative_logdir"]))
        assert steps[trial["trial_id"]] == list(range(1, epochs + 1)), trial["trial_id"]
