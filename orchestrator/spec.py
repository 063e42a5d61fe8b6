"""The study file: one YAML document, validated into typed models before anything starts.

Example:
    >>> study = load_study("studies/demo.yaml", overrides=["search.num_samples=4"])
    >>> study.trial_param_space()["data"]["path"]
    'synthetic:corrosion'

Unknown keys, wrong types, unknown trainables/spaces/samplers/schedulers and missing data
folders raise :class:`StudyError`, whose message lists every problem with a fix hint.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from orchestrator.registry import closest
from search_spaces import SPACES, parameter_names
from trainables import TRAINABLES, DataConfig

__all__ = [
    "CheckpointSpec",
    "FailureSpec",
    "ObjectiveSpec",
    "RaySpec",
    "ResourcesSpec",
    "SchedulerSpec",
    "SearchSpec",
    "Study",
    "StudyError",
    "TrackingSpec",
    "WandbSpec",
    "apply_overrides",
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
    """Optuna search: a space from ``search_spaces/`` and a seeded sampler."""

    space: str
    sampler: Literal["tpe", "random", "cmaes", "gp", "nsga2"] = "tpe"
    num_samples: int = Field(8, ge=1)
    seed: int = 0

    @field_validator("space")
    @classmethod
    def _known_space(cls, name: str) -> str:
        if name not in SPACES:
            raise ValueError(SPACES.unknown_message(name))
        return name


class ObjectiveSpec(_Section):
    metric: str = "val/accuracy"
    mode: Literal["max", "min"] = "max"


class SchedulerSpec(_Section):
    """Early stopping over the epoch axis (``training_iteration``)."""

    name: Literal["asha", "hyperband", "median", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1.0)


class ResourcesSpec(_Section):
    """Per-trial resources; fractional GPUs pack several trials on one device."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


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
    """A whole study. ``params`` are fixed trainable config keys; ``search`` suggests others."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    trainable: str
    data: DataConfig
    params: dict[str, Any] = {}
    search: Optional[SearchSpec] = None
    objective: ObjectiveSpec = ObjectiveSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    resources: ResourcesSpec = ResourcesSpec()
    max_concurrent_trials: Optional[int] = Field(None, ge=1)
    checkpoints: CheckpointSpec = CheckpointSpec()
    failure: FailureSpec = FailureSpec()
    tracking: TrackingSpec = TrackingSpec()
    ray: RaySpec = RaySpec()

    @field_validator("trainable")
    @classmethod
    def _known_trainable(cls, name: str) -> str:
        if name not in TRAINABLES:
            raise ValueError(TRAINABLES.unknown_message(name))
        return name

    @property
    def num_samples(self) -> int:
        return self.search.num_samples if self.search else 1

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
    problems = _params_problems(study.trainable, study.params, study.data.model_dump(mode="json"))
    if problems or not study.search:
        return problems
    valid = set(TRAINABLES.get(study.trainable).config_model.model_fields) - {"data"}
    for name in parameter_names(SPACES.get(study.search.space)):
        if name not in valid:
            problems.append(
                f"search.space {study.search.space!r} suggests {name!r}, which is not a "
                f"{study.trainable} config key{_did_you_mean(name, valid)}"
            )
        elif name in study.params:
            problems.append(f"params.{name} is fixed but search.space {study.search.space!r} also searches it; remove one")
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
