"""Ablation cells inside one Ray Tune experiment: a ``Searcher`` with one Optuna study per cell.

Ray's extension point for "which config runs next" is the ``Searcher`` (its ``Repeater`` and
``ConcurrencyLimiter`` wrap others the same way). :class:`AblationSearcher`:

* hands out search trials round-robin over the cells, so every cell gets the same budget,
  each suggested by that cell's own Optuna study (seeded; TPE with ``constant_liar``, its random start sized to the budget);
* tells each study the trial's best epoch (all objectives; several give a Pareto front);
* once a cell's search is over, queues its confirm runs: the best configuration (or the
  cell's fixed config without a search) with seeds ``first_seed, first_seed + 1, ...``;
* records trial -> (cell, phase, repeat) in the trial config (``config["corrotune"]``) and
  saves/restores all of it, the Optuna studies included, with the experiment state.

Example:
    >>> searcher = AblationSearcher.from_study(study)
    >>> tune.TuneConfig(search_alg=searcher, num_samples=study.num_samples)
"""

from __future__ import annotations

import logging
import math
import pickle
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import optuna
from ray.tune.search import ConcurrencyLimiter, Searcher

from orchestrator.ray_repairs.search_state import RecordedStateSearchGenerator
from orchestrator.spec import Study, cell_label
from trainables import TRIAL_META_KEY

__all__ = ["AblationSearcher", "CONFIRM", "SEARCH", "search_algorithm"]

logger = logging.getLogger(__name__)

SEARCH, CONFIRM = "search", "confirm"


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its ``study.stop()`` (only valid inside ``optimize``);
    the searcher's budget ends the grid."""

    def after_trial(self, study, trial, state, values) -> None:
        return None


def tpe_startup_trials(budget: int) -> int:
    """Random trials TPE draws before modelling, for a cell's search budget of ``budget`` trials.

    Optuna's default is 10 whatever the budget: in a 16-trial search that leaves TPE almost no
    trial of its own (it equalled random search in ``benchmarks/search_efficiency.py``). A
    quarter of the budget, at least 2 (TPE needs a good and a bad trial to split) and at most
    Optuna's 10.
    """
    return min(10, max(2, budget // 4))


def _sampler(sampler: str, seed: int, grid: dict[str, list[Any]], budget: int = 0):
    if sampler == "tpe":
        # constant_liar keeps parallel workers from proposing the same point (optuna#4714);
        # multivariate TPE is Optuna's default for one objective since 4.x (none is set here)
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=tpe_startup_trials(budget))
    if sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if sampler == "grid":
        return AskTellGridSampler(grid, seed=seed)
    return optuna.samplers.NSGAIISampler(seed=seed)


@dataclass(frozen=True)
class _GridSpace:
    """The define-by-run space of a grid search: one categorical per grid key.

    A class, not a closure: Ray pickles the searcher with every experiment snapshot, and a local
    function cannot be pickled (``search.sampler: grid`` failed at the first snapshot).
    """

    grid: dict[str, list[Any]]

    def __call__(self, trial) -> None:
        for name, values in self.grid.items():
            trial.suggest_categorical(name, values)


@dataclass
class _Cell:
    """One ablation cell: its factor values, Optuna study and the trials handed out for it."""

    label: str
    levels: dict[str, str]  # factor -> level label
    values: dict[str, Any]  # the config values the levels set
    study: Any = None  # optuna.Study (None without a search)
    issued: int = 0  # search trials handed out
    done: int = 0  # search trials finished (completed, stopped early or errored)
    confirms_issued: int = 0
    best_params: Optional[dict[str, Any]] = None


@dataclass
class _Issued:
    cell: int
    phase: str
    optuna_number: Optional[int] = None
    repeat: Optional[int] = None
    best: Optional[list[float]] = None  # objective values at the trial's best epoch so far
    params: dict[str, Any] = field(default_factory=dict)


class AblationSearcher(Searcher):
    """One Optuna study per ablation cell, equal budgets, then confirm runs over seeds.

    Args:
        cells: Each cell's ``(factor -> level label, config values)`` (one empty cell for a plain search).
        objectives: ``(metric, mode)`` pairs; the first is primary (Ray's ``metric``/``mode``).
        space: Define-by-run search space (``None``: grid search, or no search at all).
        sampler: ``tpe``, ``random``, ``cmaes``, ``gp``, ``nsga2`` or ``grid``.
        trials_per_cell: Search budget of each cell (0: no search, only confirm runs).
        repeats: Confirm runs per cell.
        first_seed: Seed of the first confirm run (``seed`` config key); ``None`` keeps the
            configured seed (a study's single fixed run).
        seed: Sampler seed (cell ``i`` uses ``seed + i``).
        grid: Grid of the ``grid`` sampler.
        study_name: Recorded in each trial's metadata.
    """

    def __init__(
        self,
        cells: list[tuple[dict[str, str], dict[str, Any]]],
        objectives: list[tuple[str, str]],
        space: Optional[Callable[[Any], Optional[dict]]] = None,
        sampler: str = "tpe",
        trials_per_cell: int = 0,
        repeats: int = 0,
        first_seed: Optional[int] = 1,
        seed: int = 0,
        grid: Optional[dict[str, list[Any]]] = None,
        study_name: str = "study",
    ) -> None:
        metric, mode = objectives[0]
        super().__init__(metric=metric, mode=mode)
        self._objectives = list(objectives)
        self._space = space if space is not None or not grid else _GridSpace(grid)
        self._trials_per_cell = trials_per_cell
        self._repeats = repeats
        self._first_seed = first_seed
        self._study_name = study_name
        self._cells = [_Cell(label=cell_label(levels), levels=dict(levels), values=dict(values)) for levels, values in cells]
        if trials_per_cell:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            directions = ["maximize" if m == "max" else "minimize" for _, m in self._objectives]
            for index, cell in enumerate(self._cells):
                cell.study = optuna.create_study(
                    study_name=f"{study_name}/{cell.label}",
                    directions=directions,
                    sampler=_sampler(sampler, seed + index, grid or {}, trials_per_cell),
                )
        self._trials: dict[str, _Issued] = {}

    @classmethod
    def from_study(cls, study: Study) -> "AblationSearcher":
        from search_spaces import get_space

        search = study.search
        return cls(
            cells=study.cells,
            objectives=[(o.metric, o.mode) for o in study.objectives],
            space=get_space(search.space) if search and search.space else None,
            sampler=search.sampler if search else "tpe",
            trials_per_cell=study.trials_per_cell,
            repeats=study.repeats,
            first_seed=study.ablation.first_seed if study.ablation.repeats else None,
            seed=search.seed if search else 0,
            grid=search.grid if search else None,
            study_name=study.name,
        )

    # --- Ray's Searcher interface ----------------------------------------------------------

    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: dict, **spec: Any) -> bool:
        # the objectives come from the study; Tune's own metric/mode must agree with the first
        return (metric in (None, self._metric)) and (mode in (None, self._mode))

    def suggest(self, trial_id: str) -> Optional[dict[str, Any]]:
        cell_index = self._next_search_cell()
        if cell_index is not None:
            return self._suggest_search(trial_id, cell_index)
        cell_index = self._next_confirm_cell()
        if cell_index is not None:
            return self._suggest_confirm(trial_id, cell_index)
        if self._waiting():
            return None  # confirm runs wait for their cell's search to finish
        return Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        issued = self._trials.get(trial_id)
        if issued is None:
            return
        values = self._values(result)
        if values is not None and (issued.best is None or self._improves(values[0], issued.best[0])):
            issued.best = values

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        issued = self._trials.get(trial_id)
        if issued is None or issued.phase != SEARCH:
            return
        if error:
            issued.best = None  # an errored trial (NaN loss, OOM) is no candidate for the best config
        elif result:
            self.on_trial_result(trial_id, result)
        cell = self._cells[issued.cell]
        if issued.optuna_number is not None and cell.study is not None:
            self._tell(cell, issued)
            issued.optuna_number = None  # told once, even if Ray reports the trial again
            cell.done += 1
            if cell.done == self._trials_per_cell:
                cell.best_params = self._best_params(issued.cell)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))

    def take_back(self, recorded: set[str]) -> list[str]:
        """Takes back the trials handed out that are not in ``recorded`` (Ray's trial ids); returns them.

        See :class:`~orchestrator.ray_repairs.search_state.RecordedStateSearchGenerator`: after a
        kill the searcher's saved state can be ahead of Ray's experiment state; trials Ray never
        recorded would hold their cells' budgets (and confirm runs) for good. They are handed out
        again.
        """
        unknown = [t for t in self._trials if t not in recorded]
        for trial_id in unknown:
            self._forget(trial_id)
        return unknown

    # --- bookkeeping -------------------------------------------------------------------------

    def _forget(self, trial_id: str) -> None:
        """Takes back a trial handed out (its Optuna trial, if open, is closed as failed)."""
        issued = self._trials.pop(trial_id)
        cell = self._cells[issued.cell]
        if issued.phase == CONFIRM:
            cell.confirms_issued -= 1
            return
        cell.issued -= 1
        if issued.optuna_number is not None:
            cell.study.tell(issued.optuna_number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        else:  # finished as far as the searcher knew: its cell's search is not over after all
            cell.done -= 1
            cell.best_params = None

    @property
    def cell_counts(self) -> dict[str, dict[str, int]]:
        """Per cell: search trials issued/finished and confirm runs issued."""
        return {c.label: {"search": c.issued, "search_done": c.done, "confirm": c.confirms_issued} for c in self._cells}

    def _next_search_cell(self) -> Optional[int]:
        """The cell with budget left and the fewest trials handed out (ties: first cell)."""
        open_cells = [i for i, c in enumerate(self._cells) if c.issued < self._trials_per_cell]
        return min(open_cells, key=lambda i: (self._cells[i].issued, i), default=None)

    def _next_confirm_cell(self) -> Optional[int]:
        for index, cell in enumerate(self._cells):
            if cell.confirms_issued >= self._repeats:
                continue
            if self._trials_per_cell == 0 or cell.best_params is not None:
                return index
        return None

    def _waiting(self) -> bool:
        return any(
            c.confirms_issued < self._repeats and c.done < self._trials_per_cell for c in self._cells
        )

    def _meta(self, cell: _Cell, phase: str, repeat: Optional[int]) -> dict[str, Any]:
        return {"cell": cell.label, "factors": dict(cell.levels), "phase": phase, "repeat": repeat, "study": self._study_name}

    def _suggest_search(self, trial_id: str, cell_index: int) -> dict[str, Any]:
        cell = self._cells[cell_index]
        trial = cell.study.ask()
        constants = self._space(trial) or {}
        params = {**trial.params, **constants}
        cell.issued += 1
        self._trials[trial_id] = _Issued(cell=cell_index, phase=SEARCH, optuna_number=trial.number, params=params)
        return {**cell.values, **params, TRIAL_META_KEY: self._meta(cell, SEARCH, None)}

    def _suggest_confirm(self, trial_id: str, cell_index: int) -> dict[str, Any]:
        cell = self._cells[cell_index]
        repeat = cell.confirms_issued
        cell.confirms_issued += 1
        params = dict(cell.best_params or {})
        self._trials[trial_id] = _Issued(cell=cell_index, phase=CONFIRM, repeat=repeat, params=params)
        config = {**cell.values, **params, TRIAL_META_KEY: self._meta(cell, CONFIRM, repeat)}
        if self._first_seed is not None:
            config["seed"] = self._first_seed + repeat
        return config

    def _values(self, result: dict) -> Optional[list[float]]:
        values = [result.get(metric) for metric, _ in self._objectives]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            return None
        return [float(v) for v in values]

    def _improves(self, value: float, best: float) -> bool:
        return value > best if self._mode == "max" else value < best

    def _tell(self, cell: _Cell, issued: _Issued) -> None:
        state = optuna.trial.TrialState.COMPLETE if issued.best is not None else optuna.trial.TrialState.FAIL
        values = issued.best if issued.best is not None else None
        cell.study.tell(issued.optuna_number, values=values, state=state, skip_if_finished=True)

    def _best_params(self, cell_index: int) -> Optional[dict[str, Any]]:
        """The searched values of the cell's best trial by the primary objective (None: all failed)."""
        finished = [t for t in self._trials.values() if t.cell == cell_index and t.phase == SEARCH and t.best is not None]
        if not finished:
            logger.warning("cell %s: every search trial failed; its confirm runs are skipped", self._cells[cell_index].label)
            self._cells[cell_index].confirms_issued = self._repeats
            return None
        sign = 1.0 if self._mode == "max" else -1.0
        return dict(max(finished, key=lambda t: sign * t.best[0]).params)


def search_algorithm(study: Study) -> RecordedStateSearchGenerator:
    """The study's search algorithm: its :class:`AblationSearcher`, limited to
    ``max_concurrent_trials`` (Ray's ``ConcurrencyLimiter``), in a :class:`~orchestrator.ray_repairs.search_state.RecordedStateSearchGenerator`."""
    searcher: Searcher = AblationSearcher.from_study(study)
    if study.max_concurrent_trials:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=study.max_concurrent_trials)
    return RecordedStateSearchGenerator(searcher)

