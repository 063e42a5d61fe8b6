"""The race of a driver SIGKILL: the stored experiment state is ahead of a trial's ``result.json``.

A real ``noop`` trial reports 4 epochs (its checkpoints as the trainable writes them); the study
folder is left as a kill in the middle of Ray's sync leaves it: the state resumes the trial from
a later checkpoint than ``result.json`` reaches. The repair puts the missing rows back exactly
once, in order, with the values the trial reported; rows a retry reported again are kept once.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from ray import tune
from ray.train._internal.checkpoint_manager import _CheckpointManager, _TrainingResult
from ray.tune.trainable.metadata import _TrainingRunMetadata

from orchestrator.ray_repairs.lost_results import drop_restarted_rows, restore_lost_rows
from orchestrator.ray_repairs.trial_files import DropRepeatedResults

TRIAL_ID = "abc_00000"
FOLDER = f"noop_{TRIAL_ID}"
EPOCHS = 4


@pytest.fixture(scope="module")
def reported(tmp_path_factory) -> list[tuple[dict, dict]]:
    """``(result row as Ray writes it, checkpoint state)`` of each epoch of a real noop trial."""
    import trainables.noop as noop

    reports = []

    def report(metrics, state):  # what tune.report receives, with the keys Ray adds to the row
        row = {**metrics, "training_iteration": len(reports) + 1, "trial_id": TRIAL_ID, "done": False}
        reports.append((json.loads(json.dumps(row)), copy.deepcopy(state)))  # as torch.save does at once

    patch = pytest.MonkeyPatch()
    patch.setattr(noop, "report_with_checkpoint", report)
    patch.setattr(noop, "load_trial_checkpoint", lambda: None)
    patch.setattr(noop, "_node_id", lambda: "node-1")
    try:
        noop.train_noop({"data": {"path": "synthetic:corrosion"}, "epochs": EPOCHS, "x": 0.7, "seed": 3})
    finally:
        patch.undo()
    return reports


def _study(tmp_path: Path, reported, in_file: list[int], checkpoint: int, last: int, status: str = "RUNNING") -> Path:
    """The study folder a killed driver leaves: ``result.json`` holds the iterations ``in_file``;
    the state resumes the trial from its checkpoint of iteration ``checkpoint`` and its last result
    is iteration ``last`` (Ray records a result before it registers that result's checkpoint)."""
    study, folder = tmp_path / "study", tmp_path / "study" / FOLDER
    folder.mkdir(parents=True)
    for i, (_, state) in enumerate(reported[:checkpoint]):
        (folder / f"checkpoint_{i:06d}").mkdir()
        torch.save(state, folder / f"checkpoint_{i:06d}" / "state.pt")
    rows = [reported[i - 1][0] for i in in_file]
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    meta = _TrainingRunMetadata()
    meta.checkpoint_manager = _CheckpointManager(tune.CheckpointConfig(num_to_keep=None))
    # the pruner has deleted the older checkpoints from Ray's bookkeeping: only the latest is there
    path = folder / f"checkpoint_{checkpoint - 1:06d}"
    meta.checkpoint_manager.register_checkpoint(_TrainingResult(tune.Checkpoint(str(path)), reported[checkpoint - 1][0]))
    meta.last_result = reported[last - 1][0]
    trial = {"trial_id": TRIAL_ID, "relative_logdir": FOLDER, "status": status, "experiment_tag": "1_x=0.7"}
    state = {"trial_data": [[json.dumps(trial), meta.get_json_state()]]}
    (study / "experiment_state-2026-12-02_00-00-00.json").write_text(json.dumps(state))
    return folder


def _rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]


def _numeric(row: dict) -> dict:
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def test_rows_the_checkpoint_recorded_come_back_once_in_order_with_the_reported_values(tmp_path, reported):
    folder = _study(tmp_path, reported, in_file=[1], checkpoint=3, last=4)
    lines = []
    assert restore_lost_rows(folder.parent, lines.append) == {FOLDER: [2, 3]}
    assert "lacked iteration(s) 2-3" in lines[0] and FOLDER in lines[0]
    rows = _rows(folder)
    assert [r["training_iteration"] for r in rows] == [1, 2, 3]  # 4 is reported again by the resumed trial
    assert rows[0] == reported[0][0]  # untouched
    assert rows[2] == reported[2][0]  # Ray's state kept this result whole (its checkpoint's)
    # rebuilt from the checkpoint's history: every number the trial reported, Ray's keys set again
    assert _numeric(rows[1]) == _numeric(reported[1][0]) and rows[1]["trial_id"] == TRIAL_ID
    assert rows[1]["score"] == reported[1][0]["score"] and rows[1]["epoch"] == 2

    # the resumed trial goes on from the checkpoint: its first result follows the rebuilt rows
    trial = SimpleNamespace(trial_id=TRIAL_ID, local_path=str(folder))
    callback = DropRepeatedResults()
    callback.on_trial_restore(0, [], trial)
    callback.on_trial_result(0, [], trial, reported[3][0])
    with (folder / "result.json").open("a") as appender:  # Ray's JSON logger, after the callbacks
        appender.write(json.dumps(reported[3][0]) + "\n")
    assert [r["training_iteration"] for r in _rows(folder)] == [1, 2, 3, 4]
    assert [r["score"] for r in _rows(folder)] == [r["score"] for r, _ in reported]

    assert restore_lost_rows(folder.parent, lines.append) == {}  # a second resume finds nothing to do
    assert len(_rows(folder)) == EPOCHS


def test_a_finished_trial_gets_every_row_up_to_its_last_result(tmp_path, reported):
    folder = _study(tmp_path, reported, in_file=[1, 2], checkpoint=4, last=4, status="TERMINATED")
    assert restore_lost_rows(folder.parent, lambda line: None) == {FOLDER: [3, 4]}
    rows = _rows(folder)
    assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4]
    assert [r["score"] for r in rows] == [r["score"] for r, _ in reported]
    assert rows[3] == reported[3][0]


def test_rows_a_retry_reported_again_are_kept_once_the_newest(tmp_path, reported):
    # a retry from checkpoint 1 reported iterations 2 and 3 again after the first attempt's 2..3
    folder = _study(tmp_path, reported, in_file=[1, 2, 3, 2, 3], checkpoint=3, last=3)
    retried = _rows(folder)
    retried[3] = {**retried[3], "time/report": -1.0}  # tell the retry's rows from the first attempt's
    (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in retried))
    assert restore_lost_rows(folder.parent, lambda line: None) == {}  # nothing was missing
    rows = _rows(folder)
    assert [r["training_iteration"] for r in rows] == [1, 2, 3]
    assert rows[1]["time/report"] == -1.0  # the retry's row, not the first attempt's


def test_a_retry_reporting_an_epoch_already_in_the_file_lists_it_once(tmp_path, reported):
    # the file reached epoch 3; the retry resumes from checkpoint 2 and reports epoch 3 again
    folder = _study(tmp_path, reported, in_file=[1, 2, 3], checkpoint=2, last=3)
    assert restore_lost_rows(folder.parent, lambda line: None) == {}
    trial = SimpleNamespace(trial_id=TRIAL_ID, local_path=str(folder))
    callback = DropRepeatedResults()
    callback.on_trial_restore(0, [], trial)
    callback.on_trial_result(0, [], trial, reported[2][0])
    with (folder / "result.json").open("a") as appender:
        appender.write(json.dumps(reported[2][0]) + "\n")
    assert [r["training_iteration"] for r in _rows(folder)] == [1, 2, 3]


def test_drop_restarted_rows_keeps_the_newest_start_of_each_iteration():
    rows = [{"training_iteration": i, "n": n} for n, i in enumerate([1, 2, 3, 1, 2])]
    assert [(r["training_iteration"], r["n"]) for r in drop_restarted_rows(rows)] == [(1, 3), (2, 4)]


def test_what_cannot_be_rebuilt_is_left_as_it_is(tmp_path, reported):
    folder = _study(tmp_path, reported, in_file=[1], checkpoint=3, last=3)
    for path in folder.glob("checkpoint_*/state.pt"):  # a trainable that keeps no history
        state = torch.load(path, weights_only=False)
        torch.save({k: v for k, v in state.items() if k != "history"}, path)
    assert restore_lost_rows(folder.parent, lambda line: None) == {FOLDER: [3]}  # the whole result Ray kept
    assert [r["training_iteration"] for r in _rows(folder)] == [1, 3]

    (folder / "result.json").write_text('{"training_iteration": 1}\nnot a result\n{"training_iteration": 2}\n')
    before = (folder / "result.json").read_text()
    assert restore_lost_rows(folder.parent, lambda line: None) == {}  # a file that is not Ray's
    assert (folder / "result.json").read_text() == before
