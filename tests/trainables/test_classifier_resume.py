"""A trial interrupted after a checkpoint and resumed ends exactly where an uninterrupted one does."""

from __future__ import annotations

import io

import pytest
import torch

import trainables.classifier as classifier
import trainables.loop as loop

CONFIG = {
    "data": {"path": "synthetic:corrosion", "synthetic": {"num_images": 40, "image_size": 32}},
    "backbone": "resnet10t",
    "image_size": 32,
    "batch_size": 8,
    "epochs": 3,
    "dropout": 0.3,
    "dense_units": 16,
    "augmentation": "p002",
    "seed": 7,
}


class _Killed(Exception):
    pass


class _FakeSession:
    """Stands in for Tune: keeps reported metrics and serialised checkpoints."""

    def __init__(self, resume_from: bytes | None = None, kill_after_epoch: int | None = None) -> None:
        self.metrics: list[dict] = []
        self.checkpoints: list[bytes] = []
        self.resume_from = resume_from
        self.kill_after_epoch = kill_after_epoch

    def load(self):
        return None if self.resume_from is None else torch.load(io.BytesIO(self.resume_from), weights_only=False)

    def report(self, metrics, state):
        buffer = io.BytesIO()
        torch.save(state, buffer)  # serialised now, as the real checkpoint is
        self.checkpoints.append(buffer.getvalue())
        self.metrics.append(dict(metrics))
        if metrics["epoch"] == self.kill_after_epoch:
            raise _Killed


def _run(monkeypatch, session: _FakeSession) -> _FakeSession:
    monkeypatch.setattr(loop, "load_trial_checkpoint", session.load)
    monkeypatch.setattr(loop, "report_with_checkpoint", session.report)
    try:
        classifier.train_classifier(dict(CONFIG))
    except _Killed:
        pass
    return session


def _comparable(metrics: dict) -> dict:
    # timings, the resume marker and the model cost (reported after every start) legitimately differ
    return {k: v for k, v in metrics.items() if not k.startswith(("time/", "model/")) and k != "resumed_from_epoch"}


def test_resumed_trial_matches_an_uninterrupted_one(monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        whole = _run(monkeypatch, _FakeSession())
        first = _run(monkeypatch, _FakeSession(kill_after_epoch=2))
        rest = _run(monkeypatch, _FakeSession(resume_from=first.checkpoints[-1]))
    finally:
        torch.set_num_threads(threads)
    assert [m["epoch"] for m in whole.metrics] == [1, 2, 3]
    assert [m["epoch"] for m in first.metrics] == [1, 2] and [m["epoch"] for m in rest.metrics] == [3]
    assert rest.metrics[0]["resumed_from_epoch"] == 2
    assert _comparable(rest.metrics[0]) == pytest.approx(_comparable(whole.metrics[2]), nan_ok=True)
    final_whole = torch.load(io.BytesIO(whole.checkpoints[-1]), weights_only=False)
    final_resumed = torch.load(io.BytesIO(rest.checkpoints[-1]), weights_only=False)
    for key, value in final_whole["model"].items():
        assert torch.equal(value, final_resumed["model"][key]), key
    assert "test/accuracy" in rest.metrics[0]


def test_a_pbt_restart_with_a_mutated_lr_trains_at_the_new_lr(monkeypatch):
    """PBT restarts a trial from another's checkpoint with a new lr; the restored optimiser follows it."""
    first = _run(monkeypatch, _FakeSession(kill_after_epoch=1))
    monkeypatch.setitem(CONFIG, "lr", CONFIG.get("lr", 1e-3) * 10)
    monkeypatch.setitem(CONFIG, "epochs", 2)
    rest = _run(monkeypatch, _FakeSession(resume_from=first.checkpoints[-1]))
    assert rest.metrics[0]["epoch"] == 2 and rest.metrics[0]["lr"] == pytest.approx(1e-2)
    state = torch.load(io.BytesIO(rest.checkpoints[-1]), weights_only=False)
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == pytest.approx([1e-2])
