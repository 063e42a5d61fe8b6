"""A trial that keeps failing is retried from its checkpoint, then marked ERROR; the study goes on."""

from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from orchestrator.exit_status import EXIT_ALL_ERRORED, EXIT_SOME_ERRORED
from tests.integration.helpers import cli, results

pytestmark = pytest.mark.slow


def test_an_errored_trial_is_marked_and_the_other_cells_finish(tmp_path):
    study = {
        "name": "errs",
        "trainable": "noop",
        "data": {"path": "synthetic:corrosion", "synthetic": {"num_images": 40, "image_size": 32}},
        "params": {"epochs": 3, "x": 0.5},
        "ablation": {"factors": {"fail_at_epoch": [None, 2]}},
        "objective": {"metric": "score", "mode": "max"},
        "scheduler": {"name": "fifo"},
        "failure": {"max_failures": 1},
        "tracking": {"wandb": {"mode": "disabled"}},
        "ray": {"num_cpus": 2},
    }
    (tmp_path / "errs.yaml").write_text(yaml.safe_dump(study))
    done = subprocess.run(cli("run", "errs.yaml", "--storage", "results"), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == EXIT_SOME_ERRORED, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("Study finished with errors: 1 of 2 trials errored, 1 finished"), lines[-1]
    # the error once, summarised, with its full log; none of Ray's per-retry tracebacks
    assert "Traceback" not in done.stderr and done.stderr.count("on purpose") == 1, done.stderr[-3000:]
    summary = next(line for line in lines if "errored: NoopTrialError" in line)
    assert "noop trial failed at epoch 2 on purpose" in summary and re.search(r"\(at trainables/noop\.py:\d+\)$", summary)

    rows = {r["cell"]: r for r in csv.DictReader((tmp_path / "results/errs/trials.csv").open())}
    assert rows["fail_at_epoch=null"]["status"] == "TERMINATED" and rows["fail_at_epoch=null"]["epochs"] == "3"
    assert rows["fail_at_epoch=2"]["status"] == "ERROR"
    board = json.loads((tmp_path / "results/errs/leaderboard.json").read_text())
    assert sorted(r["status"] for r in board["trials"]) == ["ERROR", "TERMINATED"]
    failed = tmp_path / "results/errs" / f"noop_{rows['fail_at_epoch=2']['trial_id']}"
    assert [r["epoch"] for r in results(failed)] == [1]  # the retry resumed after epoch 1, not from 0
    assert "resumed from epoch 1" in (failed / "error.txt").read_text()
    logs = [line for line in lines if line.startswith("  full log: ")]
    assert len(logs) == 1 and logs[0].endswith(f"results/errs/{failed.name}/error.txt") and Path(logs[0].split(": ", 1)[1]).is_file()
    assert [r["status"] for r in board["trials"]] == ["TERMINATED", "ERROR"]  # whatever the errored one reported


def test_a_trial_failing_the_same_way_before_reporting_is_not_retried_and_the_run_exits_1(tmp_path):
    study = {
        "name": "always", "trainable": "noop", "data": {"path": "synthetic:corrosion"},
        "params": {"epochs": 2, "x": 0.5, "fail_at_epoch": 1},  # a "configuration error": fails before any report
        "objective": {"metric": "score", "mode": "max"}, "scheduler": {"name": "fifo"},
        "failure": {"max_failures": 20}, "tracking": {"wandb": {"mode": "disabled"}}, "ray": {"num_cpus": 1},
    }
    (tmp_path / "always.yaml").write_text(yaml.safe_dump(study))
    done = subprocess.run(cli("run", "always.yaml", "--storage", "results"), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == EXIT_ALL_ERRORED, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1].startswith("Study finished with errors: all 1 trials errored")
    assert "failed again before reporting anything (the same error as before): not retried further" in done.stderr
    (error_txt,) = (tmp_path / "results/always").glob("noop_*/error.txt")
    assert error_txt.read_text().count("Failure # ") == 2  # one retry, not 20
