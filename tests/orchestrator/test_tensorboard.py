"""TensorBoard event files are written off the driver's loop, into the trial folders, and Ray adds no logger of its own."""

from __future__ import annotations

import pickle
import struct
import threading
import time
from pathlib import Path

import pyarrow.fs
import pytest
from tensorboardX.proto import event_pb2

from orchestrator.ray_repairs.atomic_fs import atomic_local_filesystem
from orchestrator.tensorboard import BackgroundTensorBoard


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` of every event file in ``folder`` (TFRecord framing, as TensorBoard reads it)."""
    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (length,) = struct.unpack_from("<Q", data, at)
            event = event_pb2.Event.FromString(data[at + 12: at + 12 + length])
            at += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


class Storage:
    def __init__(self, filesystem) -> None:
        self.storage_filesystem = filesystem


class FakeTrial:
    """What the logger reads of a Ray ``Trial``."""

    def __init__(self, root: Path, filesystem, trial_id: str = "t1") -> None:
        self.trial_id, self.evaluated_params = trial_id, {"lr": 0.1}
        self.path = str(root / "study" / trial_id)
        self.local_path = str(root / "staging" / trial_id)
        self.storage = Storage(filesystem)


def run_trial(logger: BackgroundTensorBoard, trial: FakeTrial, epochs: int = 3) -> None:
    logger.on_trial_start(iteration=0, trials=[trial], trial=trial)
    for epoch in range(1, epochs + 1):
        logger.on_trial_result(iteration=epoch, trials=[trial], trial=trial,
                               result={"training_iteration": epoch, "val/f1": epoch / 10, "config": {"lr": 0.1}})
    logger.on_trial_complete(iteration=epochs, trials=[trial], trial=trial)


def test_hooks_return_while_the_writes_wait_and_the_event_file_lands_in_the_study_folder(tmp_path):
    logger, gate = BackgroundTensorBoard(), threading.Event()
    trial = FakeTrial(tmp_path, atomic_local_filesystem())
    logger._queue(lambda: gate.wait(30))  # a slow disk: the lane is busy
    started = time.perf_counter()
    run_trial(logger, trial)
    assert time.perf_counter() - started < 1.0  # nothing waited on the lane
    assert not list(Path(trial.path).glob("events.out.tfevents.*"))
    gate.set()
    logger.on_experiment_end(trials=[trial])
    scalars = read_scalars(Path(trial.path))
    assert scalars["ray/tune/val/f1"] == [(1, pytest.approx(0.1)), (2, pytest.approx(0.2)), (3, pytest.approx(0.3))]
    assert not Path(trial.local_path).exists()  # local storage: straight into the study folder


def test_remote_storage_writes_to_staging_and_uploads_at_the_end(tmp_path):
    remote = pyarrow.fs.SubTreeFileSystem(str(tmp_path / "bucket"), pyarrow.fs.LocalFileSystem())
    (tmp_path / "bucket").mkdir()
    trial = FakeTrial(tmp_path, remote)
    trial.path = "study/t1"  # a path inside the bucket
    logger = BackgroundTensorBoard()
    run_trial(logger, trial)
    logger.on_experiment_end(trials=[trial])
    assert read_scalars(Path(trial.local_path))["ray/tune/val/f1"][-1][0] == 3
    assert read_scalars(tmp_path / "bucket" / "study" / "t1")["ray/tune/val/f1"][-1][0] == 3


def test_pickles_mid_run_and_restores_empty(tmp_path):
    logger = BackgroundTensorBoard()
    trial = FakeTrial(tmp_path, atomic_local_filesystem())
    logger.on_trial_start(iteration=0, trials=[trial], trial=trial)
    logger.on_trial_result(iteration=1, trials=[trial], trial=trial, result={"training_iteration": 1, "score": 1.0})
    logger._lane.drain(timeout_s=30)  # an open SummaryWriter (a thread) inside
    restored = pickle.loads(pickle.dumps(logger))  # Ray rewrites tuner.pkl with its callbacks
    assert isinstance(restored, BackgroundTensorBoard) and restored._lane is None
    run_trial(restored, FakeTrial(tmp_path, atomic_local_filesystem(), "t2"))
    restored.on_experiment_end(trials=[])
    assert [step for step, _ in read_scalars(tmp_path / "study" / "t2")["ray/tune/val/f1"]] == [1, 2, 3]
    logger.on_experiment_end(trials=[trial])


def test_ray_adds_no_tensorboard_logger_of_its_own_and_keeps_json_and_csv():
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback
    from ray.tune.utils.callback import _create_default_callbacks

    ours = BackgroundTensorBoard()
    callbacks = _create_default_callbacks([ours], metric="score", mode="max")
    assert [c for c in callbacks if isinstance(c, TBXLoggerCallback)] == [ours]
    assert any(isinstance(c, JsonLoggerCallback) for c in callbacks)
    assert any(isinstance(c, CSVLoggerCallback) for c in callbacks)


def test_a_study_run_leaves_event_files_tensorboard_reads_in_its_trial_folders(tiny_study):
    [trial_dir] = [p for p in tiny_study.iterdir() if (p / "result.json").is_file()]
    scalars = read_scalars(trial_dir)
    assert [step for step, _ in scalars["ray/tune/val/accuracy"]] == [1, 2]


def read_events(folder: Path) -> list:
    """Every event of every event file in ``folder``, in order."""
    events = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (length,) = struct.unpack_from("<Q", data, at)
            events.append(event_pb2.Event.FromString(data[at + 12: at + 12 + length]))
            at += 12 + length + 4
    return events


def test_writes_what_rays_logger_writes_histograms_hparams_and_no_nan(tmp_path):
    logger = BackgroundTensorBoard()
    trial = FakeTrial(tmp_path, atomic_local_filesystem())
    logger.on_trial_start(iteration=0, trials=[trial], trial=trial)
    for epoch in (1, 2):
        result = {"training_iteration": epoch, "val/f1": epoch / 10, "loss": float("nan"), "per_class": [0.1, 0.5, 0.9],
                  "phase": "fine_tune", "pid": 7, "config": {"lr": 0.1}, "timesteps_total": None}
        logger.on_trial_result(iteration=epoch, trials=[trial], trial=trial, result=result)
    logger.on_trial_complete(iteration=2, trials=[trial], trial=trial)
    logger.on_experiment_end(trials=[trial])
    events = read_events(Path(trial.path))
    assert events[0].file_version == "brain.Event:2"
    tags = {value.tag for event in events for value in event.summary.value}
    assert {"ray/tune/val/f1", "ray/tune/per_class"} <= tags
    assert not {"ray/tune/loss", "ray/tune/pid", "ray/tune/phase", "ray/tune/config/lr"} & tags
    [histogram] = [v.histo for e in events for v in e.summary.value if v.tag == "ray/tune/per_class" and e.step == 2]
    assert histogram.num == 3 and histogram.min == pytest.approx(0.1) and histogram.max == pytest.approx(0.9)
    plugins = [v.metadata.plugin_data.plugin_name for e in events for v in e.summary.value if v.metadata.plugin_data.plugin_name]
    assert plugins.count("hparams") == 3  # experiment, session start, session end: TensorBoard's HPARAMS tab
    hparams_blob = b"".join(v.metadata.plugin_data.content for e in events for v in e.summary.value)
    assert b"lr" in hparams_blob and b"ray/tune/val/f1" in hparams_blob


def test_open_trials_cost_no_thread_each(tmp_path):
    logger = BackgroundTensorBoard()
    trials = [FakeTrial(tmp_path, atomic_local_filesystem(), f"t{i}") for i in range(20)]
    before = threading.active_count()  # other tests' threads in this process too
    for trial in trials:
        logger.on_trial_start(iteration=0, trials=trials, trial=trial)
        logger.on_trial_result(iteration=1, trials=trials, trial=trial, result={"training_iteration": 1, "score": 1.0})
    logger._lane.drain(timeout_s=30)
    assert len(logger._files) == 20  # twenty event files open ...
    assert threading.active_count() - before <= 2  # ... on one lane: no thread (nor queue feeder) each, as SummaryWriter starts
    for trial in trials:
        logger.on_trial_complete(iteration=1, trials=trials, trial=trial)
    logger.on_experiment_end(trials=trials)
    assert not logger._files
    assert all(read_scalars(Path(t.path))["ray/tune/score"] == [(1, 1.0)] for t in trials)


def test_the_experiments_end_closes_the_files_of_trials_that_did_not_end(tmp_path):
    logger = BackgroundTensorBoard()
    trial = FakeTrial(tmp_path, atomic_local_filesystem())
    logger.on_trial_start(iteration=0, trials=[trial], trial=trial)
    logger.on_trial_result(iteration=1, trials=[trial], trial=trial, result={"training_iteration": 1, "score": 0.5})
    logger.on_experiment_end(trials=[trial])  # interrupted: the trial never completed
    assert not logger._files
    assert read_scalars(Path(trial.path))["ray/tune/score"] == [(1, 0.5)]
