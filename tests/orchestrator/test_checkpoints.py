"""Checkpoint pruning: the best K and the latest stay, and never the one a resume would need goes.

The trials are Ray's own bookkeeping objects (``_TrainingRunMetadata``, ``_CheckpointManager``)
and the stored experiment state is written in Ray's format, so what the pruner reads is what a
``Tuner.restore`` would read.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pyarrow.fs
import pytest
from ray import tune
from ray.train._internal.checkpoint_manager import _CheckpointManager, _TrainingResult
from ray.tune.trainable.metadata import _TrainingRunMetadata

from orchestrator.ray_repairs.checkpoints import CheckpointPruner, stored_latest_checkpoints

FS = pyarrow.fs.LocalFileSystem()


class Trial(SimpleNamespace):
    """The parts of a Ray ``Trial`` the pruner uses, with Ray's checkpoint bookkeeping."""

    def __init__(self, experiment: Path, trial_id: str):
        metadata = _TrainingRunMetadata()
        # as Ray makes it for CheckpointConfig(num_to_keep=1): it would delete on registration
        metadata.checkpoint_manager = _CheckpointManager(tune.CheckpointConfig(num_to_keep=1))
        storage = SimpleNamespace(experiment_fs_path=str(experiment), storage_filesystem=FS)
        super().__init__(trial_id=trial_id, last_result={}, storage=storage, run_metadata=metadata,
                         dir=experiment / trial_id)

    def save(self, pruner: CheckpointPruner, index: int, score: float, metric: str = "score", best_epoch: int | None = None) -> None:
        """A checkpoint reported with ``score``, in Ray's order: callbacks first, then registration."""
        path = self.dir / f"checkpoint_{index:06d}"
        path.mkdir(parents=True)
        (path / "state.pt").write_bytes(b"weights")
        self.last_result = {metric: score, "epoch": index + 1}
        if best_epoch is not None:  # the trainable's: checkpoint ``best_epoch - 1`` holds the best weights
            self.last_result["best_epoch"] = best_epoch
        checkpoint = tune.Checkpoint(str(path))
        pruner.on_checkpoint(0, [], self, checkpoint)
        self.run_metadata.checkpoint_manager.register_checkpoint(_TrainingResult(checkpoint, dict(self.last_result)))
        pruner.on_trial_save(0, [], self)

    def on_disk(self) -> list[int]:
        return sorted(int(p.name.split("_")[1]) for p in self.dir.glob("checkpoint_*"))

    def tracked(self) -> list[int]:
        manager = self.run_metadata.checkpoint_manager
        return sorted(int(Path(r.checkpoint.path).name.split("_")[1]) for r in manager.best_checkpoint_results)


def snapshot(experiment: Path, *trials: Trial, session: str = "2026-01-01_00-00-00") -> None:
    """Writes the experiment state as Ray's controller does (one file per driver session)."""
    data = [[json.dumps({"trial_id": t.trial_id}), t.run_metadata.get_json_state()] for t in trials]
    (experiment / f"experiment_state-{session}.json").write_text(json.dumps({"trial_data": data}))


@pytest.fixture()
def experiment(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    return folder


def test_the_stored_state_names_each_trials_latest_checkpoint(experiment):
    pruner = CheckpointPruner(1, "score", "max", min_read_interval_s=0)
    a, b = Trial(experiment, "a"), Trial(experiment, "b")
    for i in range(3):
        a.save(pruner, i, score=i)
    snapshot(experiment, a, b)
    state = next(experiment.glob("experiment_state-*.json"))
    assert stored_latest_checkpoints(str(state), FS) == {"a": "checkpoint_000002"}  # b has none
    state.write_text('{"trial_data": [["{"')  # caught mid-write
    assert stored_latest_checkpoints(str(state), FS) is None


def test_nothing_is_deleted_before_a_stored_state_can_resume_the_trial(experiment):
    pruner = CheckpointPruner(1, "score", "max", min_read_interval_s=0)
    trial = Trial(experiment, "t")
    for i in range(4):
        trial.save(pruner, i, score=-i)  # the first is the best
    assert trial.on_disk() == [0, 1, 2, 3]


def test_the_checkpoint_a_resume_needs_survives_until_a_newer_state_is_stored(experiment):
    """Ray (num_to_keep=1) would delete checkpoint 1 when 2 arrives, while storage still resumes from 1."""
    pruner = CheckpointPruner(1, "score", "max", min_read_interval_s=0)
    trial = Trial(experiment, "t")
    trial.save(pruner, 0, score=0.9)  # the best
    trial.save(pruner, 1, score=0.1)
    snapshot(experiment, trial)  # a resume now continues from checkpoint 1
    trial.save(pruner, 2, score=0.2)
    trial.save(pruner, 3, score=0.3)
    assert trial.on_disk() == [0, 1, 2, 3]  # 1 is what the stored state resumes from; 2 may be next

    snapshot(experiment, trial)  # stored state moves on to checkpoint 3
    trial.save(pruner, 4, score=0.4)
    assert trial.on_disk() == [0, 3, 4]  # best, the stored state's, the latest
    assert trial.tracked() == [0, 3, 4]  # Ray's bookkeeping forgot the deleted ones


def test_keeps_the_k_best_by_the_objective_in_min_mode_and_ranks_nan_lowest(experiment):
    pruner = CheckpointPruner(2, "loss", "min", min_read_interval_s=0)
    trial = Trial(experiment, "t")
    for i, loss in enumerate([0.5, math.nan, 0.1, 0.9, 0.3, 0.7]):
        trial.save(pruner, i, score=loss, metric="loss")
        snapshot(experiment, trial, session=f"2026-01-01_00-00-{i:02d}")  # storage always current
    assert trial.on_disk() == [2, 4, 5]  # 0.1 and 0.3 are the best two; 5 is the latest


def test_a_restored_trial_prunes_what_the_earlier_session_saved(experiment):
    first = CheckpointPruner(1, "score", "max", min_read_interval_s=0)
    trial = Trial(experiment, "t")
    for i in range(3):
        trial.save(first, i, score=i / 10)
    assert trial.on_disk() == [0, 1, 2]  # the driver died before any state was stored

    snapshot(experiment, trial)
    restored = Trial(experiment, "t")  # a new session: Ray's restored bookkeeping, a new pruner
    restored.run_metadata = _TrainingRunMetadata.from_json_state(trial.run_metadata.get_json_state())
    second = CheckpointPruner(1, "score", "max", min_read_interval_s=0)
    restored.save(second, 3, score=0.05)
    assert restored.on_disk() == [2, 3]  # 2 is the best and the resume point; 3 the latest


def test_a_finished_study_drops_what_was_held_back(experiment):
    pruner = CheckpointPruner(1, "score", "max", min_read_interval_s=0)
    trial = Trial(experiment, "t")
    for i in range(3):
        trial.save(pruner, i, score=-i)
    pruner.on_trial_complete(0, [], trial)
    assert trial.on_disk() == [0, 1, 2]  # the stored state does not know the trial yet
    snapshot(experiment, trial)  # Ray's final snapshot, then its on_experiment_end
    pruner.on_experiment_end([trial])
    assert trial.on_disk() == [0, 2]


def test_reads_the_stored_state_at_most_once_an_interval_but_fresh_at_the_end(experiment):
    pruner = CheckpointPruner(1, "score", "max", min_read_interval_s=3600)
    trial = Trial(experiment, "t")
    trial.save(pruner, 0, score=1.0)
    snapshot(experiment, trial)
    trial.save(pruner, 1, score=0.5)
    trial.save(pruner, 2, score=0.2)
    assert trial.on_disk() == [0, 1, 2]  # the state read before checkpoint 0 was stored still counts
    snapshot(experiment, trial)
    pruner.on_experiment_end([trial])
    assert trial.on_disk() == [0, 2]


def test_the_next_snapshot_records_a_just_registered_checkpoint(experiment):
    """Ray caches a trial's run-state JSON per result; the checkpoint is registered after it."""
    pruner = CheckpointPruner(1, "score", "max", min_read_interval_s=0)
    trial = Trial(experiment, "t")
    trial.save(pruner, 0, score=0.5)
    trial.run_metadata.last_result = {"score": 1.0}  # Ray records the next result ...
    trial.run_metadata.get_json_state()  # ... a snapshot serialises the trial ...
    trial.save(pruner, 1, score=1.0)  # ... then the checkpoint of that result is registered
    snapshot(experiment, trial)
    state = next(experiment.glob("experiment_state-*.json"))
    assert stored_latest_checkpoints(str(state), FS) == {"t": "checkpoint_000001"}


def test_rejects_keeping_no_checkpoint():
    with pytest.raises(ValueError, match="num_to_keep"):
        CheckpointPruner(0, "score", "max")


def _trial_saving_a_best_epoch(experiment: Path, pruner: CheckpointPruner, epochs: int) -> Trial:
    """Epoch 2 holds the best weights (by ``val/f1``); the objective ranks epoch 4 best."""
    trial = Trial(experiment, "t")
    trial.config = {"epochs": epochs}
    for i, score in enumerate([0.1, 0.2, 0.3, 0.9]):
        trial.save(pruner, i, score=score, best_epoch=min(i + 1, 2))
        snapshot(experiment, trial, session=f"2026-01-01_00-00-{i:02d}")
    return trial


def test_the_checkpoint_holding_the_best_weights_stays_while_later_ones_refer_to_it(experiment):
    pruner = CheckpointPruner(1, "score", "max", min_read_interval_s=0)
    trial = _trial_saving_a_best_epoch(experiment, pruner, epochs=10)
    # 3: best by the objective and latest; 2: the stored state (written after it) resumes from it;
    # 1: holds the best weights 2 and 3 refer to (0 goes)
    assert trial.on_disk() == [1, 2, 3]


def test_a_finished_trial_keeps_only_its_slimmed_last_checkpoint(experiment):
    pruner = CheckpointPruner(2, "score", "max", min_read_interval_s=0)
    trial = _trial_saving_a_best_epoch(experiment, pruner, epochs=4)
    pruner.on_trial_complete(0, [], trial)
    assert trial.on_disk() == [3]


def test_a_trial_stopped_early_keeps_its_last_checkpoint_and_the_best_weights(experiment):
    pruner = CheckpointPruner(2, "score", "max", min_read_interval_s=0)
    trial = _trial_saving_a_best_epoch(experiment, pruner, epochs=10)  # the scheduler stopped it at 4 of 10
    pruner.on_trial_complete(0, [], trial)
    assert trial.on_disk() == [1, 3]
