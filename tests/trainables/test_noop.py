"""The ``noop`` trainable: config, deterministic scores, resume, deliberate failure (no Ray)."""

from __future__ import annotations

import io
import os
import random

import numpy as np
import optuna
import pytest
import torch
from pydantic import ValidationError

import trainables.noop as noop
from search_spaces import get_space
from trainables import TRIAL_META_KEY, NoopConfig, get_trainable

DATA = {"path": "synthetic:corrosion"}


class _Session:
    """Stands in for Tune: records reports and checkpoint states, hands out a saved state."""

    def __init__(self, monkeypatch, restore: dict | None = None) -> None:
        self.reports: list[dict] = []
        self.states: list[dict] = []
        monkeypatch.setattr(noop, "load_trial_checkpoint", lambda: restore)
        monkeypatch.setattr(noop, "report_with_checkpoint", self._report)

    def _report(self, metrics: dict, state: dict) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)  # what report_with_checkpoint writes; a snapshot, not a live view
        self.reports.append(metrics)
        self.states.append(torch.load(io.BytesIO(buffer.getvalue()), weights_only=False))
        self.last_size = len(buffer.getvalue())

    @property
    def scores(self) -> list[float]:
        return [r["score"] for r in self.reports]


def _run(monkeypatch, restore: dict | None = None, **config) -> _Session:
    session = _Session(monkeypatch, restore)
    noop.train_noop({"data": DATA, **config})
    return session


def test_config_defaults_and_unknown_keys():
    cfg = NoopConfig(data=DATA)
    assert (cfg.epochs, cfg.seed, cfg.sleep_s, cfg.x, cfg.fail_at_epoch) == (1, 0, 0.0, 0.0, None)
    with pytest.raises(ValidationError, match="extra_forbidden|Extra inputs"):
        NoopConfig(data=DATA, epoch=3)
    for bad in ({"epochs": 0}, {"sleep_s": -1.0}, {"fail_at_epoch": 0}):
        with pytest.raises(ValidationError):
            NoopConfig(data=DATA, **bad)
    with pytest.raises(ValidationError, match="data"):
        NoopConfig()


def test_registered_with_its_config_and_space():
    entry = get_trainable("noop")
    assert entry.config_model is NoopConfig and entry.epochs_key in NoopConfig.model_fields
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        get_space("noop")(trial)
        assert set(trial.params) == {"x"} and 0.0 <= trial.params["x"] <= 1.0
        NoopConfig(data=DATA, **trial.params)
        study.tell(trial, 0.0)


def test_reports_every_epoch_with_where_and_when(monkeypatch):
    session = _run(monkeypatch, epochs=3, x=0.5)
    assert [r["epoch"] for r in session.reports] == [1, 2, 3]
    assert all(r["resumed_from_epoch"] == 0 and r["pid"] == os.getpid() for r in session.reports)
    assert all(r["node_id"] is None for r in session.reports)  # outside Ray
    assert all(r["time/trial_start"] <= r["time/report"] for r in session.reports)
    assert [s["epoch"] for s in session.states] == [1, 2, 3]
    assert session.last_size < 32 * 1024  # a tiny checkpoint


def test_score_depends_only_on_x_seed_and_epoch(monkeypatch):
    first = _run(monkeypatch, epochs=3, x=0.8, seed=4).scores
    # what an earlier trial in the same process leaves behind
    random.seed(123)
    np.random.seed(9)
    torch.manual_seed(77)
    assert _run(monkeypatch, epochs=3, x=0.8, seed=4).scores == first
    assert _run(monkeypatch, epochs=3, x=0.8, seed=5).scores != first
    # score approaches x: x·(1 − 2^−e) + noise in [0, 0.01)
    for epoch, score in enumerate(first, start=1):
        assert 0.0 <= score - 0.8 * (1 - 0.5**epoch) < 0.01
    assert first[0] < first[1] < first[2]


def test_resume_continues_after_the_checkpoint_epoch_with_the_same_scores(monkeypatch):
    whole = _run(monkeypatch, epochs=4, x=0.3, seed=2)
    resumed = _run(monkeypatch, restore=whole.states[1], epochs=4, x=0.3, seed=2)
    assert [r["epoch"] for r in resumed.reports] == [3, 4]
    assert all(r["resumed_from_epoch"] == 2 for r in resumed.reports)
    assert resumed.scores == whole.scores[2:]  # the RNG state travels with the checkpoint
    done = _run(monkeypatch, restore=whole.states[-1], epochs=4, x=0.3, seed=2)
    assert done.reports == []  # a finished trial restarted has nothing left to do


def test_fail_at_epoch_raises_after_reporting_the_epochs_before(monkeypatch):
    session = _Session(monkeypatch)
    with pytest.raises(noop.NoopTrialError, match="epoch 2"):
        noop.train_noop({"data": DATA, "epochs": 3, "fail_at_epoch": 2})
    assert [r["epoch"] for r in session.reports] == [1]
    # a retry resumes from epoch 1's checkpoint and fails at the same epoch again
    retry = _Session(monkeypatch, restore=session.states[0])
    with pytest.raises(noop.NoopTrialError, match="resumed from epoch 1"):
        noop.train_noop({"data": DATA, "epochs": 3, "fail_at_epoch": 2})
    assert retry.reports == []


def test_fail_at_epoch_beyond_the_budget_never_fires(monkeypatch):
    assert len(_run(monkeypatch, epochs=2, fail_at_epoch=3).reports) == 2


def test_as_trainable_strips_the_study_metadata(monkeypatch):
    session = _Session(monkeypatch)
    get_trainable("noop").as_trainable()({"data": DATA, "x": 0.25, TRIAL_META_KEY: {"cell": "a"}})
    assert len(session.reports) == 1
