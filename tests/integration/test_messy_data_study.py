"""A study on a messy real-photo folder runs, skipping exactly the unusable files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.fixtures import build_messy_folder

pytestmark = pytest.mark.slow


def test_study_on_a_messy_folder_skips_bad_files_and_finishes(tmp_path):
    notable = build_messy_folder(tmp_path / "messy")
    storage = tmp_path / "results"
    completed = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "run", str(REPO / "studies/demo.yaml"), "--storage", str(storage),
         "--set", f"data.path={tmp_path / 'messy'}", "--set", "params.positive_class=corroded",
         "--set", "params.image_size=32", "--set", "params.epochs=1", "--set", "search.num_samples=2",
         "--set", "scheduler.name=fifo", "--set", "params.augmentation=p002"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    study = storage / "demo"
    skipped = {line.split("\t")[0] for line in (study / "data" / "skipped.txt").read_text().splitlines()}
    assert skipped == {str(notable[k].resolve()) for k in ("truncated", "dup_a", "dup_b", "dup_original")}
    manifest = json.loads((study / "data" / "manifest.json").read_text())
    assert not {s["path"] for s in manifest["samples"]} & skipped
    trials = [p for p in study.iterdir() if p.name.startswith("classifier_")]
    assert len(trials) == 2
    for trial in trials:
        result = json.loads((trial / "result.json").read_text().splitlines()[-1])
        assert result["config"]["data"]["manifest"] == str(study / "data" / "manifest.json")
        assert 0.0 <= result["val/accuracy"] <= 1.0
    assert "skipping 4 unusable file(s)" in completed.stderr
