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
from typing import Any, Union, get_args

import yaml
from pydantic import BaseModel, ValidationError

from corrotune.registry import closest
from orchestrator._spec_models import (
    AblationSpec,
    CheckpointSpec,
    FailureSpec,
    MutationRange,
    ObjectiveSpec,
    RaySpec,
    ReferenceSpec,
    ResourcesSpec,
    SchedulerSpec,
    SearchSpec,
    StopSpec,
    Study,
    StudyError,
    TrackingSpec,
    WandbSpec,
    cell_label,
)
from orchestrator.checks import config_problems, number_problems
from search_spaces import SPACES, parameter_names
from trainables import TRAINABLES, DataConfig

__all__ = [
    "AblationSpec",
    "CheckpointSpec",
    "FailureSpec",
    "MutationRange",
    "ObjectiveSpec",
    "RaySpec",
    "ReferenceSpec",
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
    "read_yaml_mapping",
    "validate_study",
]


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Applies ``dotted.key=value`` overrides (values parsed as YAML) to a raw study dict."""
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(part.strip() for part in parts):
            raise StudyError("--set", [f"{item!r}: expected dotted.key=value, as in --set params.epochs=3"])
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as err:
            raise StudyError("--set", [f"{item!r}: the value is not valid YAML ({_yaml_problem(err)}); "
                                       "quote it to pass a string: --set 'key=\"...\"'"]) from None
        node = raw
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise StudyError("--set", [f"{item!r}: {'.'.join(parts[: i + 1])} is not a section"])
            node = child
        node[parts[-1]] = value
    return raw


def _yaml_problem(err: yaml.YAMLError) -> str:
    """One line: what the YAML parser found and where."""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def read_yaml_mapping(path: Union[str, os.PathLike], what: str = "study file") -> dict[str, Any]:
    """The YAML mapping in ``path``.

    Raises:
        StudyError: the file is missing, unreadable, not text, not YAML or not a mapping.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyError(source, [f"{what} not found"]) from None
    except IsADirectoryError:
        raise StudyError(source, [f"is a folder; give the {what} (YAML)"]) from None
    except UnicodeDecodeError:
        raise StudyError(source, [f"not a text file (is it a binary file?); the {what} is UTF-8 YAML"]) from None
    except OSError as err:
        raise StudyError(source, [f"cannot read the {what}: {err.strerror or err}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise StudyError(source, [f"not valid YAML: {_yaml_problem(err)}"]) from None
    except RecursionError:
        raise StudyError(source, ["not valid YAML: nested too deeply"]) from None
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else f"a {type(raw).__name__}"
        raise StudyError(source, [f"the {what} must be a YAML mapping (name:, trainable:, data:, ...), got {got}"])
    return raw


def load_study(path: Union[str, os.PathLike], overrides: list[str] | None = None) -> Study:
    """Reads, overrides and validates a study file.

    Relative data paths are resolved against the current directory and stored absolute,
    since trials run in their own directories.

    Raises:
        StudyError: with every problem found, each with a hint where one exists.
    """
    return validate_study(apply_overrides(read_yaml_mapping(path), overrides or []), str(path))


def validate_study(raw: dict[str, Any], source: str = "<study>") -> Study:
    """Validates a raw study dict; see :func:`load_study`."""
    typed = number_problems(Study, raw) + _raw_params_numbers(raw)
    try:
        study = Study.model_validate(raw)
    except ValidationError as err:
        problems = [_describe(e, Study) for e in err.errors()]
        if "objective" in raw:  # the study wrote one `objective:`, validated as objectives[0]
            problems = [re.sub(r"^objectives\.0\b", "objective", p) for p in problems]
        raise StudyError(source, typed + problems + _check_raw_params(raw)) from None
    problems = _check_trainable_config(study) + _check_data(study.data) + _check_reference(study)
    problems = typed + (problems or config_problems(study))
    if problems:
        raise StudyError(source, problems)
    data = study.data
    if not data.is_synthetic:
        data = data.model_copy(update={"path": str(Path(data.path).expanduser().resolve())})
    return study.model_copy(update={"data": data})


def _raw_params_numbers(raw: dict[str, Any]) -> list[str]:
    trainable = raw.get("trainable")
    if not isinstance(trainable, str) or trainable not in TRAINABLES:
        return []
    return number_problems(TRAINABLES.get(trainable).config_model, raw.get("params"), "params")


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


def _check_reference(study: Study) -> list[str]:
    """Every cell that ``reference.values`` names is a cell of the study."""
    if study.reference is None:
        return []
    labels = [cell_label(levels) for levels, _ in study.cells]
    return [
        f"reference.values: {label!r} is not a cell of this study{_did_you_mean(label, labels)} (cells: {', '.join(labels)})"
        for label in study.reference.values if label not in labels
    ]


def _check_data(data: DataConfig) -> list[str]:
    if data.is_synthetic:
        return []
    path = Path(data.path).expanduser()
    if not path.exists():
        return [f"data.path: {str(path)!r} does not exist (an image folder, or synthetic:corrosion for the demo set); "
                "set it in the study file or with --set data.path=FOLDER"]
    if not path.is_dir():
        return [f"data.path: {str(path)!r} is a file; expected an image folder"]
    if data.annotations is not None and not Path(data.annotations).expanduser().is_file():
        return [f"data.annotations: {data.annotations!r} is not a file; give the COCO instance-segmentation JSON"]
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
    got = repr(error.get("input"))
    if error["type"] == "literal_error" and isinstance(error.get("input"), str):
        valid = re.findall(r"'((?:[^'\\]|\\.)*)'", str((error.get("ctx") or {}).get("expected", "")))
        return f"{where}: unknown name {error['input']!r}{_did_you_mean(error['input'], valid)} (valid: {', '.join(valid)})"
    return f"{where}: {error['msg']} (got {got if len(got) <= 80 else got[:77] + '...'})"


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
