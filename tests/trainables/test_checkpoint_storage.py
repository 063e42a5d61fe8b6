"""Storage per trial: the best weights are stored once, a finished trial keeps only what export reads.

A scripted validation score makes epoch 2 of 4 the best, so checkpoints 3 and 4 must refer to
checkpoint 2 instead of holding a copy. Tune is replaced by a stand-in that persists each
checkpoint into a trial folder as Ray does (``checkpoint_000000``, ...), so the real
``report_with_checkpoint`` / ``load_trial_checkpoint`` / ``slim_final_checkpoint`` run.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import torch
from ray import tune
from torch import nn

import trainables._runtime as runtime
from trainables._runtime import BEST_REF_KEY, best_weights
from trainables.data.tensors import SplitTensors
from trainables.loop import Task, fit
from trainables.training_config import TrainingConfig

SCORES = [0.5, 0.9, 0.7, 0.6]  # val/score per epoch: epoch 2 is the best


class _Config(TrainingConfig):
    SELECT_METRICS: ClassVar[tuple[str, ...]] = ("val/score",)
    select_metric: str = "val/score"


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))  # (N, 2)


class _ScriptedTask(Task):
    def __init__(self, cfg: TrainingConfig, first_epoch: int = 1) -> None:
        super().__init__(cfg)
        self.epoch = first_epoch - 1

    def load_data(self) -> dict[str, SplitTensors]:
        g = torch.Generator().manual_seed(0)
        make = lambda n: SplitTensors(torch.randint(0, 255, (n, 3, 8, 8), dtype=torch.uint8, generator=g), torch.arange(n) % 2)  # noqa: E731
        return {"train": make(12), "val": make(6)}

    def build_model(self) -> nn.Module:
        return _Net()

    def build_loss(self) -> nn.Module:
        return nn.CrossEntropyLoss()

    def train_batch(self, index, generator):
        return self.splits["train"].images[index], self.splits["train"].labels[index]

    def score(self, outputs, data, prefix) -> dict[str, float]:
        self.epoch += 1
        return {f"{prefix}/score": SCORES[self.epoch - 1]}

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"classes": ["a", "b"]}


class _FakeTune:
    """Ray Tune's session calls the runtime makes, persisting checkpoints into ``trial``."""

    Checkpoint = tune.Checkpoint

    def __init__(self, trial: Path, resume_from: Path | None = None, kill_after_epoch: int | None = None):
        self.trial, self.kill_after_epoch = trial, kill_after_epoch
        self.current = tune.Checkpoint(str(resume_from)) if resume_from else None
        self.metrics: list[dict] = []

    def get_checkpoint(self):
        return self.current

    def get_context(self):
        storage = SimpleNamespace(trial_fs_path=str(self.trial))
        return SimpleNamespace(get_storage=lambda: storage, get_trial_dir=lambda: None)

    def report(self, metrics, checkpoint):
        target = self.trial / f"checkpoint_{len(list(self.trial.glob('checkpoint_*'))):06d}"
        shutil.copytree(checkpoint.path, target)
        self.current = tune.Checkpoint(str(target))
        self.metrics.append(dict(metrics))
        if metrics["epoch"] == self.kill_after_epoch:
            raise KeyboardInterrupt  # the worker dies right after this checkpoint was persisted


def _cfg() -> _Config:
    return _Config.model_validate({"data": {"path": "synthetic:corrosion"}, "epochs": 4, "batch_size": 4, "seed": 3, "profile": False, "artifacts": False})


def _run(monkeypatch, fake: _FakeTune, first_epoch: int = 1) -> _FakeTune:
    monkeypatch.setattr(runtime, "tune", fake)
    try:
        fit(_ScriptedTask(_cfg(), first_epoch))
    except KeyboardInterrupt:
        pass
    return fake


def _load(folder: Path) -> dict:
    return torch.load(folder / "state.pt", weights_only=False)


def _nbytes(obj) -> int:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return len(buffer.getvalue())


def _bookkeeping(state: dict) -> int:
    """Bytes of what a checkpoint holds besides weights and optimiser state."""
    return _nbytes({k: v for k, v in state.items() if k not in ("model", "optimizer", "best_model")})


def test_best_weights_are_stored_once_and_a_finished_trial_keeps_only_them(monkeypatch, tmp_path):
    trial = tmp_path / "trial"
    trial.mkdir()
    _run(monkeypatch, _FakeTune(trial))
    folders = sorted(trial.glob("checkpoint_*"))
    assert len(folders) == 4
    running = [_load(f) for f in folders[:3]]
    assert running[1]["best_model"] is not None  # epoch 2 became best: its checkpoint holds them
    assert running[2]["best_model"] is None and running[2][BEST_REF_KEY] == folders[1].name
    for folder, state in zip(folders[:3], running):
        # this toy network is smaller than the RNG states and history, so those are left out
        needed = _nbytes({"model": state["model"], "optimizer": state["optimizer"]})
        assert (folder / "state.pt").stat().st_size - _bookkeeping(state) <= 1.05 * needed, folder.name

    final = _load(folders[3])
    assert "optimizer" not in final and "model" not in final and final["classes"] == ["a", "b"]
    for key, value in running[1]["model"].items():  # epoch 2's weights, not the last epoch's
        assert torch.equal(final["best_model"][key], value), key
    assert (folders[3] / "state.pt").stat().st_size - _bookkeeping(final) <= 1.1 * _nbytes(final["best_model"])
    assert not list(folders[3].glob(".*tmp"))


def test_resuming_from_a_checkpoint_that_refers_to_the_best_one_ends_as_an_uninterrupted_run(monkeypatch, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    whole.mkdir(), cut.mkdir()
    _run(monkeypatch, _FakeTune(whole))
    first = _run(monkeypatch, _FakeTune(cut, kill_after_epoch=3))
    assert _load(cut / "checkpoint_000002")[BEST_REF_KEY] == "checkpoint_000001"
    rest = _run(monkeypatch, _FakeTune(cut, resume_from=cut / "checkpoint_000002"), first_epoch=4)
    assert [m["epoch"] for m in first.metrics + rest.metrics] == [1, 2, 3, 4]
    assert rest.metrics[-1]["best_epoch"] == 2
    a, b = _load(whole / "checkpoint_000003"), _load(cut / "checkpoint_000003")
    assert set(a) == set(b)
    for key, value in a["best_model"].items():
        assert torch.equal(value, b["best_model"][key]), key
    assert [h["val/score"] for h in a["history"]] == [h["val/score"] for h in b["history"]]


def test_a_reference_to_a_deleted_checkpoint_is_a_clear_error(tmp_path):
    folder = tmp_path / "trial" / "checkpoint_000004"
    folder.mkdir(parents=True)
    state = {"best_model": None, BEST_REF_KEY: "checkpoint_000001"}
    with pytest.raises(FileNotFoundError, match="checkpoint_000001.*deleted outside corrotune"):
        best_weights(state, str(folder))
    assert best_weights({"best_model": {"w": 1}}, str(folder)) == {"w": 1}
    assert best_weights({}, str(folder)) is None


def test_a_trial_started_from_another_trials_checkpoint_stores_the_inherited_best_weights_itself(monkeypatch, tmp_path):
    """PBT: the donor's folder is not this trial's, so no checkpoint of this trial may refer into it."""
    donor, clone = tmp_path / "donor", tmp_path / "clone"
    donor.mkdir(), clone.mkdir()
    _run(monkeypatch, _FakeTune(donor, kill_after_epoch=3))
    _run(monkeypatch, _FakeTune(clone, resume_from=donor / "checkpoint_000002"), first_epoch=4)
    (folder,) = clone.glob("checkpoint_*")
    state = _load(folder)
    assert state["best_epoch"] == 2 and state.get(BEST_REF_KEY) is None
    for key, value in _load(donor / "checkpoint_000001")["model"].items():
        assert torch.equal(state["best_model"][key], value), key


class _StagingTune(_FakeTune):
    """Also records the folder each checkpoint was staged in before it was persisted."""

    def __init__(self, trial: Path) -> None:
        super().__init__(trial)
        self.staged_in: list[Path] = []

    def report(self, metrics, checkpoint):
        self.staged_in.append(Path(checkpoint.path).parent)
        super().report(metrics, checkpoint)


def _state() -> dict:
    return {"model": _Net().state_dict(), "epoch": 1}


def _staging(monkeypatch, tmp_path) -> tuple[Path, _StagingTune]:
    """A RAM staging folder stand-in (``tmp_path/shm``) and the fake Tune session persisting into ``tmp_path/trial``."""
    ram = tmp_path / "shm"
    ram.mkdir()
    monkeypatch.setattr(runtime, "_MEMORY_STAGING", str(ram))
    fake = _StagingTune(tmp_path / "trial")
    fake.trial.mkdir()
    monkeypatch.setattr(runtime, "tune", fake)
    return ram, fake


def test_checkpoints_are_staged_in_the_ram_folder_when_it_has_room(monkeypatch, tmp_path):
    ram, fake = _staging(monkeypatch, tmp_path)
    state = _state()
    runtime.report_with_checkpoint({"epoch": 1}, state)
    assert fake.staged_in == [ram]
    assert list(ram.iterdir()) == []  # the staging copy is gone once Ray persisted it
    persisted = _load(fake.trial / "checkpoint_000000")
    assert all(torch.equal(persisted["model"][k], v) for k, v in state["model"].items())


def test_checkpoints_are_staged_on_disk_when_the_ram_folder_lacks_room_or_is_missing(monkeypatch, tmp_path):
    import tempfile

    _, fake = _staging(monkeypatch, tmp_path)
    monkeypatch.setattr(runtime.os, "statvfs", lambda path: SimpleNamespace(f_bavail=1000, f_frsize=4096))  # 4 MB free
    runtime.report_with_checkpoint({"epoch": 1}, _state())
    monkeypatch.undo()  # room again, but no RAM folder (macOS, Windows)
    monkeypatch.setattr(runtime, "tune", fake)
    monkeypatch.setattr(runtime, "_MEMORY_STAGING", str(tmp_path / "no-such-folder"))
    runtime.report_with_checkpoint({"epoch": 2}, _state())
    assert fake.staged_in == [Path(tempfile.gettempdir())] * 2
    assert [m["epoch"] for m in fake.metrics] == [1, 2]


def test_a_ram_folder_that_fills_up_while_saving_falls_back_to_disk(monkeypatch, tmp_path):
    import tempfile

    ram, fake = _staging(monkeypatch, tmp_path)
    save = torch.save

    def full_in_ram(obj, path):
        if Path(path).parent.parent == ram:
            raise OSError(28, "No space left on device")
        save(obj, path)

    monkeypatch.setattr(runtime.torch, "save", full_in_ram)
    runtime.report_with_checkpoint({"epoch": 1}, _state())
    assert fake.staged_in == [Path(tempfile.gettempdir())]
    assert len(fake.metrics) == 1 and list(ram.iterdir()) == []
    assert _load(fake.trial / "checkpoint_000000")["epoch"] == 1
