"""A run prints corrotune's lines only; ``--verbose`` brings Ray's own output back."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.integration.helpers import cli

pytestmark = pytest.mark.slow

# the start of a line of Ray's Python loggers ("2026-12-01 22:55:04,918\tWARNING worker.py:...")
# or of its C++ logging ("[2026-12-01 22:55:12,473 E 23298 23298] core_worker.cc:...")
RAY_LOG_LINE = re.compile(r"^\[?\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(?:[DIWEF]\s\d+|DEBUG|INFO|WARNING|ERROR)", re.MULTILINE)
RAY_REPORTER = ("Configuration for experiment", "View detailed results here", "To visualize your results with TensorBoard",
                "RecordedStateSearchGenerator", "CellScheduler")


def _run(tmp_path, *options: str) -> str:
    study = {
        "name": "hush", "trainable": "noop",
        "data": {"path": "synthetic:corrosion", "synthetic": {"num_images": 40, "image_size": 32}},
        "params": {"epochs": 1},
        "search": {"space": "noop", "num_samples": 1},
        "objective": {"metric": "score", "mode": "max"},
        "scheduler": {"name": "fifo"},
        # offline W&B: its logging actor is what made Ray's core_worker.cc print an actor-restart note
        "tracking": {"wandb": {"mode": "offline"}},
        "ray": {"num_cpus": 1},
    }
    (tmp_path / "hush.yaml").write_text(yaml.safe_dump(study))
    done = subprocess.run(cli(*options, "run", "hush.yaml", "--storage", "results"), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Study finished: 1 trial" in output, output[-3000:]
    return output


def test_a_run_prints_no_ray_line_and_verbose_brings_them_back(tmp_path):
    (tmp_path / "quiet").mkdir()
    quiet = _run(tmp_path / "quiet")
    assert not RAY_LOG_LINE.findall(quiet), quiet
    assert not [text for text in RAY_REPORTER if text in quiet], quiet
    assert "core_worker.cc" not in quiet and "logging.cc" not in quiet and "/session_" not in quiet, quiet
    study_dir = tmp_path / "quiet" / "results" / "hush"
    assert f"TensorBoard: tensorboard --logdir {study_dir}" in quiet, quiet
    assert list(study_dir.glob("noop_*/events.out.tfevents.*")), "the hint names a folder without TensorBoard files"

    (tmp_path / "verbose").mkdir()
    verbose = _run(tmp_path / "verbose", "--verbose")
    assert "Configuration for experiment" in verbose, verbose
    assert RAY_LOG_LINE.findall(verbose), verbose  # Ray's own log lines ("Started a local Ray instance", ...)
