"""The study file: one YAML document, validated into typed models before anything starts.

Example:
    >>> study = load_study("studies/demo.yaml", overrides=["search.num_samples=4"])
    >>> study.trial_param_space()["data"]["path"]
    'synthetic:corrosion'

Unknown keys, wrong types, unknown trainables/spaces/samplers/schedulers and missing data
folders raise :class:`StudyError`, whose message lists every problem with a fix hint.
"""

from __future__ import annotations

import itertools
import math
import os
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator.registry import closest
from search_spaces import SPACES, parameter_names
from trainables import TRAINABLES, DataConfig

__all__ = [
    "AblationSpec",
    "CheckpointSpec",
    "FailureSpec",
    "ObjectiveSpec",
    "RaySpec",
    "ResourcesSpec",
    "SchedulerSpec",
    "SearchSpec",
    "StopSpec",
    "Study",
    "StudyError",
    "TrackingSpec",
    "WandbSpec",
    "apply_overrides",
    "cell_label",
    "load_study",
]


class StudyError(ValueError):
    """A study file that cannot run; ``problems`` lists each issue on its own line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: invalid study\n" + "\n".join(f"  - {p}" for p in problems))


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
    num_samples: Optional[int] = Field(None, ge=1)
    seed: int = 0
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
    repeats: int = Field(0, ge=0)
    first_seed: int = 1

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
        return factors

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


def _label(value: Any) -> str:
    return value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def cell_label(levels: dict[str, Any]) -> str:
    """``"attention=eca,pooling=gmp"``; ``"base"`` for a study without factors."""
    return ",".join(f"{k}={_label(v)}" for k, v in levels.items()) or "base"


class CheckpointSpec(_Section):
    num_to_keep: int = Field(2, ge=1)


class FailureSpec(_Section):
    max_failures: int = Field(1, ge=-1)


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

    num_cpus: Optional[int] = Field(None, ge=1)


class Study(_Section):
    """A whole study. ``params`` are fixed trainable config keys; ``search`` suggests others.

    ``objective`` (one) or ``objectives`` (several: the searcher then finds a Pareto front)
    name the metrics; the first one ranks trials, scores checkpoints and drives the scheduler.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    trainable: str
    data: DataConfig
    params: dict[str, Any] = {}
    ablation: AblationSpec = AblationSpec()
    search: Optional[SearchSpec] = None
    objectives: list[ObjectiveSpec] = Field(default_factory=lambda: [ObjectiveSpec()], min_length=1)
    scheduler: SchedulerSpec = SchedulerSpec()
    stop: StopSpec = StopSpec()
    resources: ResourcesSpec = ResourcesSpec()
    max_concurrent_trials: Optional[int] = Field(None, ge=1)
    storage: Optional[str] = None
    checkpoints: CheckpointSpec = CheckpointSpec()
    failure: FailureSpec = FailureSpec()
    tracking: TrackingSpec = TrackingSpec()
    ray: RaySpec = RaySpec()

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


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies ``dotted.key=value`` overrides (values parsed as YAML) to a raw study dict."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise StudyError("--set", [f"{item!r}: expected dotted.key=value"])
        parts = key.strip().split(".")
        node = raw
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise StudyError("--set", [f"{item!r}: {'.'.join(parts[: i + 1])} is not a section"])
            node = child
        node[parts[-1]] = yaml.safe_load(text) if text.strip() else None
    return raw


def load_study(path: Union[str, os.PathLike], overrides: list[str] | None = None) -> Study:
    """Reads, overrides and validates a study file.

    Relative data paths are resolved against the current directory and stored absolute,
    since trials run in their own directories.

    Raises:
        StudyError: with every problem found, each with a hint where one exists.
    """
    source = str(path)
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise StudyError(source, ["study file not found"]) from None
    except OSError as err:
        raise StudyError(source, [f"cannot read study file: {err.strerror}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise StudyError(source, [f"not valid YAML: {err}"]) from None
    if not isinstance(raw, dict):
        raise StudyError(source, ["the study must be a YAML mapping (name:, trainable:, data:, ...)"])
    return validate_study(apply_overrides(raw, overrides or []), source)


def validate_study(raw: dict[str, Any], source: str = "<study>") -> Study:
    """Validates a raw study dict; see :func:`load_study`."""
    try:
        study = Study.model_validate(raw)
    except ValidationError as err:
        problems = [_describe(e, Study) for e in err.errors()]
        raise StudyError(source, problems + _check_raw_params(raw)) from None
    problems = _check_trainable_config(study) + _check_data(study.data)
    if problems:
        raise StudyError(source, problems)
    data = study.data
    if not data.is_synthetic:
        data = data.model_copy(update={"path": str(Path(data.path).expanduser().resolve())})
    return study.model_copy(update={"data": data})


def _params_problems(trainable: str, params: Any, data: Any) -> list[str]:
    """Problems of ``params`` against the trainable's config model (data checked elsewhere)."""
    model = TRAINABLES.get(trainable).config_model
    try:
        model.model_validate({**params, "data": data})
    except ValidationError as err:
        return [_describe(e, model, prefix="params") for e in err.errors() if e["loc"][:1] != ("data",)]
    return []


def _check_raw_params(raw: dict[str, Any]) -> list[str]:
    """Params problems of a study whose other sections failed, so one run reports all."""
    trainable, params = raw.get("trainable"), raw.get("params", {})
    if trainable not in TRAINABLES or not isinstance(params, dict):
        return []
    return _params_problems(trainable, params, raw.get("data"))


def _check_trainable_config(study: Study) -> list[str]:
    valid = set(TRAINABLES.get(study.trainable).config_model.model_fields) - {"data"}
    problems: list[str] = []
    searched = _searched_keys(study, valid, problems)
    for factor, keys in study.ablation.factor_keys().items():
        for name in sorted(keys):
            where = f"ablation.factors.{factor}" + ("" if keys == {factor} else f" sets {name!r}, which")
            if name not in valid:
                problems.append(f"{where}: not a {study.trainable} config key{_did_you_mean(name, valid)}")
            elif name in study.params:
                problems.append(f"{where}: also fixed in params.{name}; remove one")
            elif name in searched:
                problems.append(f"{where}: also searched by the search; remove one")
    if problems:
        return _params_problems(study.trainable, study.params, study.data.model_dump(mode="json")) + problems
    data = study.data.model_dump(mode="json")
    cells = study.cells
    # params are checked with the first cell's factor values (factors may complete them)
    problems = _params_problems(study.trainable, {**study.params, **cells[0][1]}, data)
    for levels, values in cells[1:] if not problems else []:  # every level must be valid for its key
        problems += [f"ablation cell {cell_label(levels)}: {p}" for p in _params_problems(study.trainable, {**study.params, **values}, data)]
    if not problems:
        problems = _searched_problems(study, valid, data)
    return problems + _check_phases(study, valid, searched)


def _searched_keys(study: Study, valid: set[str], problems: list[str]) -> set[str]:
    """Config keys the search suggests; appends problems with them to ``problems``."""
    search = study.search
    if search is None:
        return set()
    source = f"search.space {search.space!r} suggests" if search.space else "search.grid has"
    names = parameter_names(SPACES.get(search.space)) if search.space else list(search.grid)
    for name in names:
        if name not in valid:
            problems.append(f"{source} {name!r}, which is not a {study.trainable} config key{_did_you_mean(name, valid)}")
        elif name in study.params:
            problems.append(f"params.{name} is fixed but {source} it too; remove one")
    return set(names)


def _searched_problems(study: Study, valid: set[str], data: dict[str, Any]) -> list[str]:
    """Grid values that are not valid values of their config key."""
    problems = []
    grid = study.search.grid if study.search else {}
    for name, values in grid.items():
        for value in values if name in valid else []:
            config = {**study.params, **study.cells[0][1], name: value}
            problems += [f"search.grid.{name}={value!r}: {p}" for p in _params_problems(study.trainable, config, data)]
    return problems


def _check_phases(study: Study, valid: set[str], searched: set[str]) -> list[str]:
    """Confirm repeats, PBT and multi-objective rules."""
    problems = []
    if study.ablation.repeats:
        if "seed" not in valid:
            problems.append(f"ablation.repeats: the {study.trainable} trainable has no `seed` config key to repeat over")
        elif "seed" in searched or any("seed" in keys for keys in study.ablation.factor_keys().values()):
            problems.append("ablation.repeats sets `seed` for the confirm runs; do not also search it or make it a factor")
    if study.scheduler.name == "hyperband" and (study.ablation.factors or study.ablation.repeats):
        problems.append(
            "scheduler hyperband compares every trial with every other, across ablation cells and confirm runs; "
            "use asha (run per cell, confirm runs never stopped), median or fifo for ablations"
        )
    if study.scheduler.name == "pbt":
        if study.ablation.factors or study.ablation.repeats:
            problems.append(
                "scheduler pbt copies weights and configs between trials, which would mix ablation cells and "
                "confirm runs; use asha, hyperband, median or fifo for ablations"
            )
        for name in study.scheduler.mutations:
            if name not in valid:
                problems.append(f"scheduler.mutations.{name}: not a {study.trainable} config key{_did_you_mean(name, valid)}")
    if len(study.objectives) > 1 and study.search and study.search.sampler == "cmaes":
        problems.append("search.sampler cmaes optimises one objective; use tpe, nsga2, gp or random with several objectives")
    gpu = study.resources.gpu
    if gpu > 1 and not float(gpu).is_integer():
        problems.append(f"resources.gpu: {gpu} GPUs per trial; fractions are only possible below 1 (0.5, 0.25, ...)")
    return problems


def _check_data(data: DataConfig) -> list[str]:
    if data.is_synthetic:
        return []
    path = Path(data.path).expanduser()
    if not path.exists():
        return [f"data.path: {str(path)!r} does not exist (an image folder, or synthetic:corrosion for the demo set)"]
    if not path.is_dir():
        return [f"data.path: {str(path)!r} is a file; expected an image folder"]
    return []


def _did_you_mean(name: str, candidates) -> str:
    hint = closest(name, list(candidates))
    return f"; did you mean {hint!r}?" if hint else ""


def _describe(error: dict[str, Any], model: type[BaseModel], prefix: str = "") -> str:
    loc = [str(p) for p in error["loc"]]
    where = ".".join(([prefix] if prefix else []) + loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        fields = [f for f in _fields_at(model, error["loc"][:-1]) if not (prefix == "params" and f == "data")]
        return f"{where}: unknown key{_did_you_mean(loc[-1], fields)} (valid keys: {', '.join(fields)})"
    if error["type"] == "missing":
        return f"{where}: required key is missing"
    if error["type"] == "value_error":
        return f"{where}: {re.sub(r'^Value error, ', '', error['msg'])}"
    return f"{where}: {error['msg']} (got {error.get('input')!r})"


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the (nested) model at ``loc``, for did-you-mean hints."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        candidates = [field.annotation, *get_args(field.annotation)]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []
