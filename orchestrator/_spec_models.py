"""The study file's typed sections (pydantic): every key, its type and its one default.

Loading and the cross-checks between sections live in :mod:`orchestrator.spec`.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from search_spaces import SPACES
from trainables import TRAINABLES, DataConfig

SEED_MAX = 2**32 - 1
"""Largest seed NumPy, Optuna's samplers and torch all accept."""

MAX_TRIALS = 100_000
"""More trials than any study runs (per cell, per study, concurrently): a typo, not a plan."""


class StudyError(ValueError):
    """A study (or a path, option or dataset it names) that cannot run; ``problems`` lists each issue.

    ``heading`` follows ``source`` on the first line (``"demo.yaml: invalid study"``).
    """

    def __init__(self, source: str, problems: list[str], heading: str = "invalid study") -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {heading}\n" + "\n".join(f"  - {p}" for p in problems))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchSpec(_Section):
    """Optuna search: a space from ``search_spaces/`` and a seeded sampler.

    ``num_samples`` is the trial budget of each ablation cell (of the study without factors).
    The ``grid`` sampler walks ``grid`` (config key: list of values) instead of a space; its
    budget defaults to the number of grid points.
    """

    space: Optional[str] = None
    sampler: Literal["tpe", "random", "cmaes", "gp", "nsga2", "grid"] = "tpe"
    num_samples: Optional[int] = Field(None, ge=1, le=MAX_TRIALS)
    seed: int = Field(0, ge=0, le=SEED_MAX)
    grid: dict[str, list[Any]] = {}

    @field_validator("space")
    @classmethod
    def _known_space(cls, name: Optional[str]) -> Optional[str]:
        if name is not None and name not in SPACES:
            raise ValueError(SPACES.unknown_message(name))
        return name

    @field_validator("grid")
    @classmethod
    def _non_empty_axes(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        empty = [key for key, values in grid.items() if not values]
        if empty:
            raise ValueError(f"grid axes need at least one value: {', '.join(empty)}")
        for key, values in grid.items():
            odd = [v for v in values if v is not None and not isinstance(v, (str, int, float, bool))]
            if odd:  # Optuna's categorical choices; use an ablation factor for lists and mappings
                raise ValueError(f"grid.{key}: values must be numbers, strings, booleans or null, got {odd[0]!r}")
        return grid

    @model_validator(mode="after")
    def _space_or_grid(self) -> "SearchSpec":
        if self.sampler == "grid":
            if not self.grid or self.space:
                raise ValueError("the grid sampler takes `grid:` (config key: [values, ...]) and no `space:`")
            if self.num_samples is not None and self.num_samples > self.grid_size:
                raise ValueError(f"num_samples {self.num_samples} exceeds the {self.grid_size} grid points")
        elif self.grid:
            raise ValueError(f"`grid:` needs `sampler: grid` (got sampler {self.sampler!r})")
        elif not self.space:
            raise ValueError("`space:` is required (a search space from search_spaces/), or use `sampler: grid` with `grid:`")
        return self

    @property
    def grid_size(self) -> int:
        return math.prod(len(values) for values in self.grid.values())

    @property
    def trials_per_cell(self) -> int:
        if self.num_samples is not None:
            return self.num_samples
        return self.grid_size if self.sampler == "grid" else 8


class ObjectiveSpec(_Section):
    metric: str = "val/accuracy"
    mode: Literal["max", "min"] = "max"


class MutationRange(_Section):
    """A continuous PBT mutation range (resampled uniformly, or log-uniformly)."""

    low: float
    high: float
    log: bool = False


class SchedulerSpec(_Section):
    """Early stopping (asha, hyperband, median) or PBT over the epoch axis (``training_iteration``).

    ``brackets`` is ASHA's; ``perturbation_interval``, ``mutations`` (config key: list of
    values or a low/high range), ``quantile_fraction`` and ``resample_probability`` are PBT's.
    """

    name: Literal["asha", "hyperband", "pbt", "median", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1.0)
    brackets: int = Field(1, ge=1)
    perturbation_interval: int = Field(2, ge=1)
    mutations: dict[str, Union[list[Any], MutationRange]] = {}
    quantile_fraction: float = Field(0.25, gt=0, le=0.5)
    resample_probability: float = Field(0.25, ge=0, le=1)

    @model_validator(mode="after")
    def _pbt_needs_mutations(self) -> "SchedulerSpec":
        if self.name == "pbt" and not self.mutations:
            raise ValueError("pbt needs `mutations:` (config key: [values] or {low, high, log})")
        if self.name != "pbt" and self.mutations:
            raise ValueError(f"`mutations:` only applies to the pbt scheduler (got {self.name!r})")
        return self


class ResourcesSpec(_Section):
    """Per-trial resources; fractional GPUs pack several trials on one device."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class StopSpec(_Section):
    """Stop rules on top of the scheduler.

    Attributes:
        time_budget_s: Wall-clock budget of the whole study; running trials stop when it ends.
        trial_time_s: Budget of each trial (its ``time_total_s``).
        target: Stop a trial once the primary objective reaches this value (in its mode).
        patience: Stop a trial whose primary objective has not improved for this many epochs.
    """

    time_budget_s: Optional[float] = Field(None, gt=0)
    trial_time_s: Optional[float] = Field(None, gt=0)
    target: Optional[float] = None
    patience: Optional[int] = Field(None, ge=1)


class AblationSpec(_Section):
    """Ablation cells (the product of ``factors``' levels) and confirm repeats.

    A factor is either a config key with a list of values (``pooling: [gap, gmp]``) or a
    name with named levels, each a set of config values
    (``attention: {none: {attention: none, attention_placement: none}, eca: {...}}``).
    Every cell gets the same search budget. With ``repeats`` the best configuration of each
    cell (its fixed config when there is no search) is re-run with seeds ``first_seed``,
    ``first_seed + 1``, ...: those confirm runs are what the report compares.
    """

    factors: dict[str, Union[list[Any], dict[str, dict[str, Any]]]] = {}
    repeats: int = Field(0, ge=0, le=1000)
    first_seed: int = Field(1, ge=0, le=SEED_MAX)

    @field_validator("factors")
    @classmethod
    def _levels(cls, factors: dict[str, Any]) -> dict[str, Any]:
        for name, levels in factors.items():
            if not levels:
                raise ValueError(f"factor {name!r} needs at least one level")
            if isinstance(levels, list):
                labels = [_label(v) for v in levels]
                if len(set(labels)) != len(labels):
                    raise ValueError(f"factor {name!r} lists a value twice: {levels}")
            values = levels if isinstance(levels, list) else list(levels.values())
            labels = [_label(v) for v in levels] if isinstance(levels, list) else [str(level) for level in levels]
            for i, j in itertools.combinations(range(len(values)), 2):
                if _same_value(values[i], values[j]):
                    raise ValueError(
                        f"factor {name!r}: levels {labels[i]!r} and {labels[j]!r} are the same value "
                        f"({values[i]!r} == {values[j]!r}), so their cells would be duplicates; remove one"
                    )
        return factors

    @model_validator(mode="after")
    def _seeds_in_range(self) -> "AblationSpec":
        if self.repeats and self.first_seed + self.repeats - 1 > SEED_MAX:
            raise ValueError(f"first_seed + repeats - 1 = {self.first_seed + self.repeats - 1} exceeds the largest seed {SEED_MAX}")
        return self

    def _levels_of(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        """``(level label, config values)`` of a factor."""
        levels = self.factors[name]
        if isinstance(levels, dict):
            return [(str(level), dict(values)) for level, values in levels.items()]
        return [(_label(value), {name: value}) for value in levels]

    def cells(self) -> list[tuple[dict[str, str], dict[str, Any]]]:
        """Each cell's ``(factor -> level label, config values)``, in a fixed order (one empty cell without factors)."""
        names = list(self.factors)
        cells = []
        for combo in itertools.product(*(self._levels_of(n) for n in names)):
            labels = {name: label for name, (label, _) in zip(names, combo)}
            config = {k: v for _, values in combo for k, v in values.items()}
            cells.append((labels, config))
        return cells

    def factor_keys(self) -> dict[str, set[str]]:
        """Config keys each factor sets."""
        return {name: {k for _, values in self._levels_of(name) for k in values} for name in self.factors}


def _same_value(a: Any, b: Any) -> bool:
    """Equal as config values: ``1 == 1.0``, ``true == 1`` (both reach the trial as the same number)."""
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - values that cannot be compared are different
        return False


def _label(value: Any) -> str:
    return value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def cell_label(levels: dict[str, Any]) -> str:
    """``"attention=eca,pooling=gmp"``; ``"base"`` for a study without factors."""
    return ",".join(f"{k}={_label(v)}" for k, v in levels.items()) or "base"


class CheckpointSpec(_Section):
    num_to_keep: int = Field(2, ge=1, le=10_000)


MAX_RETRIES = 100
"""The most ``failure.max_failures`` may be (``-1``, Ray's "retry forever", is refused)."""


class FailureSpec(_Section):
    """Retries of a failed trial (Ray's ``FailureConfig``), each from the trial's last checkpoint.

    ``max_failures`` is 0..100. A trial that fails again before it reported anything since its
    last failure is not retried further (``orchestrator/_failures.py``).
    """

    max_failures: int = Field(1, le=MAX_RETRIES)

    @field_validator("max_failures")
    @classmethod
    def _bounded(cls, value: int) -> int:
        if value < 0:
            raise ValueError(
                f"{value} is not a number of retries: Ray reads -1 as 'retry forever', and a trial that fails the same way "
                f"every time would then never end; give 0 to {MAX_RETRIES} (e.g. 3 on spot workers)"
            )
        return value


class WandbSpec(_Section):
    """W&B tracking; ``auto`` is online with ``WANDB_API_KEY`` set, else offline."""

    project: str = "corrotune"
    entity: Optional[str] = None
    mode: Literal["auto", "offline", "online", "disabled"] = "auto"
    tags: list[str] = []


class TrackingSpec(_Section):
    wandb: WandbSpec = WandbSpec()


class RaySpec(_Section):
    """How the driver starts Ray locally (``num_cpus`` caps a laptop run)."""

    num_cpus: Optional[int] = Field(None, ge=1, le=100_000)


class ReferenceSpec(_Section):
    """Published numbers that ``corrotune report`` prints beside ours (paper value, our mean ± CI,
    the difference, whether the paper's value lies inside our interval).

    Attributes:
        source: Where the numbers come from (``"P000 Table IV: test accuracy, one run, seed 1"``).
        values: Cell label (``"backbone=resnet18,loss=bce"``; ``base`` without factors) ->
            metric (``test/accuracy``) -> the published value, on the same scale as ours.
    """

    source: str = Field(min_length=1)
    values: dict[str, dict[str, float]] = Field(min_length=1)


class Study(_Section):
    """A whole study. ``params`` are fixed trainable config keys; ``search`` suggests others.

    ``objective`` (one) or ``objectives`` (several: the searcher then finds a Pareto front)
    name the metrics; the first one ranks trials, scores checkpoints and drives the scheduler.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=128)  # a folder and a W&B group name
    trainable: str
    data: DataConfig
    params: dict[str, Any] = {}
    ablation: AblationSpec = AblationSpec()
    search: Optional[SearchSpec] = None
    objectives: list[ObjectiveSpec] = Field(default_factory=lambda: [ObjectiveSpec()], min_length=1)
    scheduler: SchedulerSpec = SchedulerSpec()
    stop: StopSpec = StopSpec()
    resources: ResourcesSpec = ResourcesSpec()
    max_concurrent_trials: Optional[int] = Field(None, ge=1, le=MAX_TRIALS)
    storage: Optional[str] = None
    checkpoints: CheckpointSpec = CheckpointSpec()
    failure: FailureSpec = FailureSpec()
    tracking: TrackingSpec = TrackingSpec()
    ray: RaySpec = RaySpec()
    reference: Optional[ReferenceSpec] = None

    @model_validator(mode="before")
    @classmethod
    def _one_objective_key(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "objective" in raw:
            if "objectives" in raw:
                raise ValueError("give either `objective:` or `objectives:`, not both")
            raw = {**raw, "objectives": [raw["objective"]]}
            del raw["objective"]
        return raw

    @field_validator("trainable")
    @classmethod
    def _known_trainable(cls, name: str) -> str:
        if name not in TRAINABLES:
            raise ValueError(TRAINABLES.unknown_message(name))
        return name

    @field_validator("objectives")
    @classmethod
    def _distinct_metrics(cls, objectives: list[ObjectiveSpec]) -> list[ObjectiveSpec]:
        metrics = [o.metric for o in objectives]
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"an objective metric is listed twice: {metrics}")
        return objectives

    @property
    def objective(self) -> ObjectiveSpec:
        """The primary objective."""
        return self.objectives[0]

    @property
    def cells(self) -> list[tuple[dict[str, str], dict[str, Any]]]:
        """Each cell's ``(factor -> level label, config values)``."""
        return self.ablation.cells()

    @property
    def trials_per_cell(self) -> int:
        """Search trials of each cell (0 without a search)."""
        return self.search.trials_per_cell if self.search else 0

    @property
    def repeats(self) -> int:
        """Confirm runs of each cell: ``ablation.repeats``, or one fixed run without a search."""
        return self.ablation.repeats or (0 if self.search else 1)

    @property
    def num_samples(self) -> int:
        """Every trial the study plans: search trials plus confirm runs, over all cells."""
        return len(self.cells) * (self.trials_per_cell + self.repeats)

    def trial_param_space(self) -> dict[str, Any]:
        """The fixed part of every trial's config (the searcher adds its suggestions)."""
        return {**self.params, "data": self.data.model_dump(mode="json")}

    def epochs(self) -> int:
        """The trainable's epoch budget for this study (the schedulers' ``max_t``)."""
        entry = TRAINABLES.get(self.trainable)
        config = entry.config_model.model_validate(self.trial_param_space())
        return int(getattr(config, entry.epochs_key))
