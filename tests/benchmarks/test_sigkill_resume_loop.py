"""benchmarks/sigkill_resume_loop.py: its checks catch lost, repeated and wrong rows; a short loop finds none.

The loop itself (2 studies, each SIGKILLed at random moments under a CPU hog and resumed until it
finishes) takes several minutes on two cores, so it carries the ``durability`` marker, which the
default run leaves out (``pytest -m durability`` runs it).
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sigkill_resume_loop.py"


@pytest.fixture(scope="module")
def loop():
    spec = importlib.util.spec_from_file_location("sigkill_resume_loop", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _study(study_dir: Path, loop, steps: list[int], csv_epochs: int) -> None:
    """One finished trial of 3 epochs whose result.json holds ``steps`` (true scores)."""
    config = {"data": {"path": "synthetic:corrosion"}, "x": 0.4, "seed": 2, "epochs": 3, "corrotune": {"cell": "sleep_s=0.3", "phase": "search"}}
    truth = loop.expected_scores(0.4, 2, 3)
    folder = study_dir / "noop_t1"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text("".join(json.dumps({"training_iteration": s, "score": truth[s - 1]}) + "\n" for s in steps))
    trial = {"trial_id": "t1", "status": "TERMINATED", "relative_logdir": "noop_t1", "config": config}
    run = {"last_result": {"training_iteration": 3, "score": truth[2]}}
    (study_dir / "experiment_state-2026-12-02_00-00-00.json").write_text(json.dumps({"trial_data": [[json.dumps(trial), json.dumps(run)]]}))
    with (study_dir / "trials.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["trial_id", "epochs", "best/score"])
        writer.writeheader()
        writer.writerow({"trial_id": "t1", "epochs": csv_epochs, "best/score": max(truth)})


def test_the_checks_count_what_each_file_lost_repeated_or_got_wrong(tmp_path, loop):
    _study(tmp_path / "a", loop, steps=[1, 3, 3], csv_epochs=3)
    outcome = loop.check_study(tmp_path / "a")
    assert outcome["rows_lost"] == {"result_json": 1, "trials_csv": 0, "wandb": 3}  # no W&B run at all
    assert outcome["rows_repeated"] == {"result_json": 1, "trials_csv": 0, "wandb": 0}
    assert not outcome["finished_exactly_once"]  # 1 trial of the 10 the study plans
    assert any("t1 result_json: steps [1, 3, 3]" in p for p in outcome["problems"])

    _study(tmp_path / "b", loop, steps=[1, 2, 3], csv_epochs=2)
    lines = (tmp_path / "b" / "noop_t1" / "result.json").read_text().splitlines()
    lines[1] = json.dumps({"training_iteration": 2, "score": 0.0})
    (tmp_path / "b" / "noop_t1" / "result.json").write_text("\n".join(lines) + "\n")
    outcome = loop.check_study(tmp_path / "b")
    assert outcome["rows_lost"]["result_json"] == 0 and outcome["wrong_values"] == {"result_json": 1, "trials_csv": 1, "wandb": 0}


@pytest.mark.slow
@pytest.mark.durability
def test_studies_killed_at_random_moments_and_resumed_lose_and_repeat_nothing(loop, capsys):
    status = loop.main(["--runs", "2", "--hogs", "1", "--seed", "7"])
    report = json.loads(capsys.readouterr().out)
    totals = report["totals"]
    assert totals["kills"] >= 2, totals  # each study's first driver at least
    assert totals["runs_every_trial_finished_once"] == 2, report["runs"]
    for key in ("rows_lost", "rows_repeated", "wrong_values"):
        assert totals[key] == {"result_json": 0, "trials_csv": 0, "wandb": 0}, report["runs"]
    assert status == 0
