"""A finished trial survives a resume whose newest experiment state a disk-full crash cut short.

Without a whole copy of that state, ``resume`` stops (exit 2), says which file is cut short and
which trials only it records, and changes nothing; with Ray's staging copy still on the machine,
it puts the state back and the finished trial stays finished, its results as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from orchestrator.exit_status import EXIT_INVALID, EXIT_OK
from tests.integration.helpers import cli

pytestmark = pytest.mark.slow

STUDY = {
    "name": "cut", "trainable": "noop", "data": {"path": "synthetic:corrosion"},
    "params": {"epochs": 2}, "search": {"space": "noop", "num_samples": 1},
    "objective": {"metric": "score", "mode": "max"}, "scheduler": {"name": "fifo"},
    "tracking": {"wandb": {"mode": "disabled"}}, "ray": {"num_cpus": 1},
}


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_never_drops_a_finished_trial_recorded_only_in_a_cut_short_state():
    root = Path(tempfile.mkdtemp(prefix="ct-cut-"))  # short: Ray's socket paths are length-limited
    try:
        (root / "cut.yaml").write_text(yaml.safe_dump(STUDY))
        env = {**os.environ, "RAY_TMPDIR": str(root / "ray")}
        (root / "ray").mkdir()
        done = subprocess.run(cli("run", "cut.yaml", "--storage", "results"), cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == EXIT_OK, done.stderr[-3000:]
        study_dir = root / "results" / "cut"
        (trial,) = study_dir.glob("noop_*")
        results = (trial / "result.json").read_bytes()
        (state,) = study_dir.glob("experiment_state-*.json")
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])

        elsewhere = {**env, "RAY_TMPDIR": str(root / "other-machine")}  # no staging copy there
        before = _snapshot(study_dir)
        refused = subprocess.run(cli("resume", str(study_dir)), env=elsewhere, capture_output=True, text=True, timeout=300)
        assert refused.returncode == EXIT_INVALID, refused.stderr[-3000:]
        assert f"{state.name} (cut short" in refused.stderr and f"{trial.name}: 2 epoch(s) reported" in refused.stderr
        assert "nothing was changed" in refused.stderr and "Traceback" not in refused.stderr
        assert _snapshot(study_dir) == before

        resumed = subprocess.run(cli("resume", str(study_dir)), env=env, capture_output=True, text=True, timeout=600)
        assert resumed.returncode == EXIT_OK, resumed.stderr[-3000:]
        assert "put back whole from Ray's staging copy" in resumed.stderr
        assert (trial / "result.json").read_bytes() == results  # not run again
        board = json.loads((study_dir / "leaderboard.json").read_text())["trials"]
        assert [(r["trial_id"], r["status"], r["epochs"]) for r in board] == [(trial.name.split("_")[1], "TERMINATED", 2)]
        assert not (study_dir / "unrecorded_trials").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)
