"""A trial stopped mid-epoch saves its state at the batch boundary; the retry ends as an uninterrupted run.

Without Ray: Tune's checkpoint calls are replaced by an in-memory session, the study's storage
by a temporary folder, and the stop request (SIGTERM's ``atexit`` hook, or the driver's stop file)
is made from inside a batch.
"""

from __future__ import annotations

import io
import json

import pytest
import torch
from pyarrow import fs

import trainables.classifier as classifier
import trainables.loop as loop
import trainables.preemption as preemption

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BATCHES_PER_EPOCH = 4  # the train split of the 40 synthetic images
CONFIG = {
    "data": {"path": "synthetic:corrosion", "synthetic": {"num_images": 40, "image_size": 32}},
    "backbone": "resnet10t", "image_size": 32, "batch_size": 8, "epochs": 2, "dropout": 0.3,
    "dense_units": 16, "augmentation": "p002", "seed": 3, "artifacts": False, "profile": False,
}


class _Session:
    """Stands in for Tune: reported metrics, serialised checkpoints, and the batches trained."""

    def __init__(self, resume_from: bytes | None = None, stop_at_batch: int | None = None, stop=None) -> None:
        self.metrics: list[dict] = []
        self.checkpoints: list[bytes] = []
        self.resume_from, self.stop_at_batch, self.stop = resume_from, stop_at_batch, stop
        self.batches = 0

    def load(self):
        return None if self.resume_from is None else torch.load(io.BytesIO(self.resume_from), weights_only=False)

    def report(self, metrics, state):
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.checkpoints.append(buffer.getvalue())
        self.metrics.append(dict(metrics))

    def batch_started(self) -> None:
        self.batches += 1
        if self.batches == self.stop_at_batch:
            self.stop()


def _run(monkeypatch, tmp_path, session: _Session) -> _Session:
    storage = (fs.LocalFileSystem(), str(tmp_path / "trial"), str(tmp_path))
    monkeypatch.setattr(loop, "load_trial_checkpoint", session.load)
    monkeypatch.setattr(loop, "report_with_checkpoint", session.report)
    monkeypatch.setattr(preemption, "_tune_storage", lambda: storage)
    monkeypatch.setattr(preemption, "_STOP_POLL_S", 0.0)  # look for the stop file at every batch
    train_batch = classifier.ClassifierTask.train_batch

    def counted(self, index, generator):
        session.batch_started()
        return train_batch(self, index, generator)

    monkeypatch.setattr(classifier.ClassifierTask, "train_batch", counted)
    try:
        classifier.train_classifier(dict(CONFIG))
    except preemption.TrialPreempted:
        pass
    monkeypatch.setattr(classifier.ClassifierTask, "train_batch", train_batch)
    return session


def _comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith(("time/", "model/")) and k != "resumed_from_epoch"}


_UNCUT: list[_Session] = []


def _uncut(monkeypatch, tmp_path) -> _Session:
    """The uninterrupted run (once per module)."""
    if not _UNCUT:
        _UNCUT.append(_run(monkeypatch, tmp_path / "whole", _Session()))
    return _UNCUT[0]


def _sigterm() -> None:
    preemption.request_stop("SIGTERM (test)")


@pytest.mark.parametrize("stop_at_batch", [2, BATCHES_PER_EPOCH, BATCHES_PER_EPOCH + 3], ids=["epoch1", "epoch1-end", "epoch2"])
def test_a_trial_stopped_mid_epoch_continues_at_that_batch_and_ends_as_an_uninterrupted_one(monkeypatch, tmp_path, stop_at_batch):
    whole = _uncut(monkeypatch, tmp_path)
    first = _run(monkeypatch, tmp_path / "cut", _Session(stop_at_batch=stop_at_batch, stop=_sigterm))
    saved = tmp_path / "cut" / "trial" / preemption.MID_EPOCH_DIR / "state.pt"
    state = torch.load(saved, weights_only=False)["mid_epoch"]
    assert (state["epoch"], state["done"]) == (1 if stop_at_batch <= BATCHES_PER_EPOCH else 2, (stop_at_batch - 1) % BATCHES_PER_EPOCH + 1)
    assert len(first.metrics) == state["epoch"] - 1  # nothing was reported for the cut epoch
    rest = _run(monkeypatch, tmp_path / "cut", _Session(resume_from=first.checkpoints[-1] if first.checkpoints else None))

    assert whole.batches == 2 * BATCHES_PER_EPOCH
    assert first.batches + rest.batches == whole.batches  # no batch trained twice, none skipped
    assert [m["epoch"] for m in first.metrics + rest.metrics] == [1, 2]
    for cut, uncut in zip(first.metrics + rest.metrics, whole.metrics):
        assert _comparable(cut) == pytest.approx(_comparable(uncut), nan_ok=True)
    final_whole = torch.load(io.BytesIO(whole.checkpoints[-1]), weights_only=False)["model"]
    final_rest = torch.load(io.BytesIO(rest.checkpoints[-1]), weights_only=False)["model"]
    assert all(torch.equal(value, final_rest[key]) for key, value in final_whole.items())
    assert not saved.parent.exists()  # the next epoch's checkpoint replaced it


def test_the_drivers_stop_file_stops_a_trial_and_a_state_of_another_checkpoint_is_not_used(monkeypatch, tmp_path):
    def driver_stops() -> None:
        (tmp_path / preemption.STOP_FILE).write_text(json.dumps({"signal": "SIGINT"}))

    first = _run(monkeypatch, tmp_path, _Session(stop_at_batch=BATCHES_PER_EPOCH + 2, stop=driver_stops))
    (tmp_path / preemption.STOP_FILE).unlink()
    assert [m["epoch"] for m in first.metrics] == [1]
    # started afresh (the checkpoint of epoch 1 is not the one the saved epoch 2 continues): all batches run
    fresh = _run(monkeypatch, tmp_path, _Session())
    assert fresh.batches == 2 * BATCHES_PER_EPOCH and [m["epoch"] for m in fresh.metrics] == [1, 2]


def test_the_exit_hook_waits_for_the_training_thread_to_save_its_batch(tmp_path):
    """What Ray's SIGTERM handler sets off (SystemExit in the worker's main thread, then atexit)."""
    import threading
    import time

    storage = (fs.LocalFileSystem(), str(tmp_path / "trial"), str(tmp_path))
    outcome: list[BaseException] = []
    started = threading.Event()

    def train() -> None:  # a trial's thread: batches of 50 ms
        watch = preemption.Preemption({"seed": 0}, storage=storage)
        batches = [torch.tensor([i]) for i in range(100)]
        cursor = watch.cursor(1, torch.Generator().manual_seed(0), batches, lambda: {"model": {}, "config": {"seed": 0}})
        try:
            for _ in cursor.remaining():
                started.set()
                time.sleep(0.05)
                cursor.batch_done(0.0, cursor.seen + 1)
        except preemption.TrialPreempted as err:
            outcome.append(err)

    thread = threading.Thread(target=train)
    thread.start()
    assert started.wait(30)
    preemption._on_exit()  # returns once the thread saved (or the grace ran out)
    assert outcome and "epoch 1, after batch" in str(outcome[0])
    saved = torch.load(tmp_path / "trial" / preemption.MID_EPOCH_DIR / "state.pt", weights_only=False)["mid_epoch"]
    assert 0 < saved["done"] < 100 and saved["seen"] == saved["done"]
    thread.join(5)
    preemption._on_exit()  # no trial training: returns at once
