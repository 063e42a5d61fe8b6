"""Ray Tune schedulers and stop rules for a study.

ASHA and the median rule run per ablation cell (:class:`CellScheduler`): a trial is only
compared with trials of its own cell, so a weaker cell is not starved of epochs, and confirm
runs always run to the end. On resume the per-cell schedulers are rebuilt from the trials'
``result.json`` (Ray restores trials but not its scheduler's rung state: ray#15177).
HyperBand and PBT are Ray's own, for plain searches.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Optional

from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
    TrialScheduler,
)
from ray.tune.stopper import CombinedStopper, FunctionStopper, Stopper

from orchestrator.spec import Study
from trainables import TRIAL_META_KEY

__all__ = ["CellScheduler", "build_scheduler", "build_stopper", "trial_records"]

logger = logging.getLogger(__name__)

TIME_ATTR = "training_iteration"


def trial_records(trial) -> list[dict[str, Any]]:
    """The results Ray saved for ``trial`` (its ``result.json`` in storage), oldest first."""
    path = Path(trial.path, "result.json").as_posix()
    try:
        with trial.storage.storage_filesystem.open_input_stream(path) as stream:
            text = stream.read().decode()
    except (FileNotFoundError, OSError):
        return []
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:  # a line cut off by a crash
            continue
    return records


def _cell_and_phase(trial) -> tuple[str, str]:
    meta = (trial.config or {}).get(TRIAL_META_KEY) or {}
    return meta.get("cell", "base"), meta.get("phase", "search")


class CellScheduler(FIFOScheduler):
    """Runs one early-stopping scheduler per ablation cell over its search trials.

    Args:
        make_inner: Builds a fresh scheduler (ASHA, median rule) for a cell.
    """

    def __init__(self, make_inner: Callable[[], TrialScheduler], metric: str, mode: str) -> None:
        super().__init__()
        self._make_inner = make_inner
        self._metric, self._mode = metric, mode
        self._inner: dict[str, TrialScheduler] = {}

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], **spec: Any) -> bool:
        return metric in (None, self._metric) and mode in (None, self._mode)

    def _scheduler_of(self, trial) -> Optional[TrialScheduler]:
        cell, phase = _cell_and_phase(trial)
        if phase != "search":
            return None  # confirm runs are what the report compares: never stopped early
        if cell not in self._inner:
            self._inner[cell] = self._make_inner()
        return self._inner[cell]

    def on_trial_add(self, tune_controller, trial) -> None:
        inner = self._scheduler_of(trial)
        if inner is None:
            return
        inner.on_trial_add(tune_controller, trial)
        last = trial.last_result or {}
        if last.get(TIME_ATTR):  # a restored trial: rebuild what the scheduler knew about it
            self._replay(tune_controller, inner, trial, last[TIME_ATTR])

    def _replay(self, tune_controller, inner: TrialScheduler, trial, upto: int) -> None:
        records = [r for r in trial_records(trial) if r.get(TIME_ATTR, 0) <= upto]
        for record in records:
            inner.on_trial_result(tune_controller, trial, record)
        if records and trial.status == "TERMINATED":
            inner.on_trial_complete(tune_controller, trial, records[-1])
        logger.debug("scheduler state of trial %s rebuilt from %d results", trial.trial_id, len(records))

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        inner = self._scheduler_of(trial)
        return TrialScheduler.CONTINUE if inner is None else inner.on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        inner = self._scheduler_of(trial)
        if inner is not None and result:
            inner.on_trial_complete(tune_controller, trial, result)

    def on_trial_error(self, tune_controller, trial) -> None:
        inner = self._scheduler_of(trial)
        if inner is not None:
            inner.on_trial_error(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial) -> None:
        inner = self._scheduler_of(trial)
        if inner is not None:
            inner.on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return f"CellScheduler over {len(self._inner)} cell(s)"


def _mutation(value: Any):
    from ray import tune

    if isinstance(value, list):
        return value
    return tune.loguniform(value.low, value.high) if value.log else tune.uniform(value.low, value.high)


def build_scheduler(study: Study) -> TrialScheduler:
    """The study's scheduler over ``training_iteration`` (epochs)."""
    spec, max_t = study.scheduler, study.epochs()
    metric, mode = study.objective.metric, study.objective.mode
    if spec.name == "asha":
        def make_inner() -> TrialScheduler:
            return ASHAScheduler(
                time_attr=TIME_ATTR, metric=metric, mode=mode, max_t=max_t,
                grace_period=min(spec.grace_period, max_t), reduction_factor=spec.reduction_factor,
                brackets=spec.brackets,
            )
        return CellScheduler(make_inner, metric, mode)
    if spec.name == "median":
        def make_inner() -> TrialScheduler:
            return MedianStoppingRule(time_attr=TIME_ATTR, metric=metric, mode=mode, grace_period=spec.grace_period)
        return CellScheduler(make_inner, metric, mode)
    if spec.name == "hyperband":
        return HyperBandScheduler(time_attr=TIME_ATTR, max_t=max_t, reduction_factor=spec.reduction_factor)
    if spec.name == "pbt":
        return PopulationBasedTraining(
            time_attr=TIME_ATTR,
            perturbation_interval=spec.perturbation_interval,
            hyperparam_mutations={k: _mutation(v) for k, v in spec.mutations.items()},
            quantile_fraction=spec.quantile_fraction,
            resample_probability=spec.resample_probability,
            synch=False,
        )
    return FIFOScheduler()


class _TargetReached:
    """Stops a trial once the primary objective reaches ``target`` (picklable)."""

    def __init__(self, metric: str, mode: str, target: float) -> None:
        self.metric, self.mode, self.target = metric, mode, target

    def __call__(self, trial_id: str, result: dict) -> bool:
        value = result.get(self.metric)
        if not isinstance(value, (int, float)):
            return False
        return value >= self.target if self.mode == "max" else value <= self.target


class _TrialTime:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, trial_id: str, result: dict) -> bool:
        return result.get("time_total_s", 0.0) >= self.seconds


class _NoImprovement:
    """Stops a trial whose primary objective has not improved for ``patience`` epochs."""

    def __init__(self, metric: str, mode: str, patience: int) -> None:
        self.metric, self.mode, self.patience = metric, mode, patience
        self.best: dict[str, tuple[float, int]] = {}  # trial id -> (best value, its iteration)

    def __call__(self, trial_id: str, result: dict) -> bool:
        value, step = result.get(self.metric), result.get(TIME_ATTR, 0)
        if not isinstance(value, (int, float)):
            return False
        best = self.best.get(trial_id)
        if best is None or (value > best[0] if self.mode == "max" else value < best[0]):
            self.best[trial_id] = (value, step)
            return False
        return step - best[1] >= self.patience


def build_stopper(study: Study) -> Optional[Stopper]:
    """The study's per-trial stop rules (``stop.time_budget_s`` goes to ``TuneConfig``)."""
    spec, objective = study.stop, study.objective
    stoppers: list[Stopper] = []
    if spec.target is not None:
        stoppers.append(FunctionStopper(_TargetReached(objective.metric, objective.mode, spec.target)))
    if spec.trial_time_s is not None:
        stoppers.append(FunctionStopper(_TrialTime(spec.trial_time_s)))
    if spec.patience is not None:
        stoppers.append(FunctionStopper(_NoImprovement(objective.metric, objective.mode, spec.patience)))
    if not stoppers:
        return None
    return stoppers[0] if len(stoppers) == 1 else CombinedStopper(*stoppers)
