"""A trial resumed from an older checkpoint than its last recorded result lists each epoch once."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

from orchestrator.ray_repairs.trial_files import DropRepeatedResults


def _trial(tmp_path, iterations: int) -> SimpleNamespace:
    """A trial whose staged result files hold ``iterations`` rows (as Ray restores them)."""
    rows = [{"training_iteration": i, "epoch": i, "score": i / 10} for i in range(1, iterations + 1)]
    (tmp_path / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with (tmp_path / "progress.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["score", "training_iteration", "epoch"])
        writer.writeheader()
        writer.writerows(rows)
    return SimpleNamespace(trial_id="t", local_path=str(tmp_path))


def _iterations(tmp_path) -> tuple[list[int], list[int]]:
    json_rows = [json.loads(line)["training_iteration"] for line in (tmp_path / "result.json").read_text().splitlines()]
    with (tmp_path / "progress.csv").open(newline="") as handle:
        csv_rows = [int(row["training_iteration"]) for row in csv.DictReader(handle)]
    return json_rows, csv_rows


def test_rows_the_restarted_trial_reports_again_are_dropped_and_appends_follow(tmp_path):
    trial = _trial(tmp_path, 5)
    appender = (tmp_path / "result.json").open("a")  # Ray's JSON logger holds it open like this
    callback = DropRepeatedResults()
    callback.on_trial_start(0, [], trial)
    callback.on_trial_result(0, [], trial, {"training_iteration": 4})  # resumed from iteration 3
    appender.write(json.dumps({"training_iteration": 4}) + "\n")
    appender.close()
    assert _iterations(tmp_path)[1] == [1, 2, 3]
    assert _iterations(tmp_path)[0] == [1, 2, 3, 4]


def test_only_the_first_result_after_a_start_is_checked(tmp_path):
    trial = _trial(tmp_path, 3)
    callback = DropRepeatedResults()
    callback.on_trial_result(0, [], trial, {"training_iteration": 1})  # not (re)started here
    assert _iterations(tmp_path) == ([1, 2, 3], [1, 2, 3])
    callback.on_trial_restore(0, [], trial)
    callback.on_trial_result(0, [], trial, {"training_iteration": 4})  # nothing repeated
    callback.on_trial_result(0, [], trial, {"training_iteration": 2})
    assert _iterations(tmp_path) == ([1, 2, 3], [1, 2, 3])


def test_missing_files_and_foreign_lines_are_left_alone(tmp_path):
    callback = DropRepeatedResults()
    trial = SimpleNamespace(trial_id="t", local_path=str(tmp_path / "nothing-yet"))
    callback.on_trial_start(0, [], trial)
    callback.on_trial_result(0, [], trial, {"training_iteration": 1})  # no files: no error
    (tmp_path / "result.json").write_text('{"training_iteration": 1}\nnot json\n{"training_iteration": 2}\n')
    trial = SimpleNamespace(trial_id="u", local_path=str(tmp_path))
    callback.on_trial_start(0, [], trial)
    callback.on_trial_result(0, [], trial, {"training_iteration": 2})
    assert (tmp_path / "result.json").read_text() == '{"training_iteration": 1}\nnot json\n'
