"""Checks of a study beyond its types, all before anything starts.

:func:`config_problems` (run by :func:`orchestrator.spec.validate_study`, so by ``validate``,
``run`` and ``resume``) checks every value a trial config will hold — in ``params``, in each
ablation level and in ``search.grid`` — against what the code that receives it accepts: timm
backbone names, augmentation ops, local weights files, seeds, sane sizes, the dataset's classes
(``positive_class``) and layout, and the objective metrics against what the trainable reports.
Each problem names the key, lists the valid names and suggests the closest. Nothing here
imports torch or timm (see :mod:`orchestrator._known_names`).

:func:`start_problems` adds the storage and cluster checks; :func:`data_problems` scans the data
(``run`` only: it reads every file once, and the scan is cached).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterator, Union, get_args, get_origin

from pydantic import BaseModel

from corrotune.registry import closest
from orchestrator._known_names import (
    attention_names, augmentation_names, module_literal, smp_encoder_names, timm_model_names, timm_pretrained_tags,
)

__all__ = ["SANE_MAXIMA", "SEED_MAX", "config_problems", "data_problems", "number_problems", "start_problems"]

SEED_MAX = 2**32 - 1
"""Largest seed NumPy (``np.random.seed``), Optuna's samplers and torch all accept (none takes a negative one)."""

SANE_MAXIMA = {"epochs": 100_000, "image_size": 4096, "batch_size": 65_536, "eval_batch_size": 65_536, "offline_expansion": 100}
"""Upper bounds of trial config keys beyond which a trial only exhausts memory or time."""

_INT_MAX = 2**31 - 1


def _hint(name: str, valid) -> str:
    near = closest(name, list(valid))
    return f"; did you mean {near!r}?" if near else ""


# ------------------------------------------------------------------------------ wrong types


def number_problems(model: type[BaseModel], raw: Any, prefix: str = "") -> list[str]:
    """``true``/``false`` given where ``model`` expects a number (pydantic's lax mode would take 1/0).

    Args:
        model: The pydantic model ``raw`` is validated with (nested models are followed).
        raw: The raw mapping from the study file.
        prefix: Dotted location of ``raw`` in the study, for the messages.
    """
    if not isinstance(raw, dict):
        return []
    problems = []
    for key, value in raw.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        if field is None:
            continue
        types = _leaf_types(field.annotation)
        where = f"{prefix}.{key}" if prefix else key
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, bool) for v in values) and bool not in types and types & {int, float} and Any not in types:
            problems.append(f"{where}: expected a number, got {value!r} (YAML reads true/false/yes/no/on/off as booleans)")
        elif any(isinstance(v, float) and not math.isfinite(v) for v in values) and float in types:
            problems.append(f"{where}: expected a finite number, got {value!r}")
        nested = next((t for t in types if isinstance(t, type) and issubclass(t, BaseModel)), None)
        if nested is not None and isinstance(value, dict):
            problems += number_problems(nested, value, where)
    return problems


def _leaf_types(annotation: Any) -> set:
    args = get_args(annotation)
    if not args:
        return {annotation}
    if get_origin(annotation) is dict:
        return set()
    return set().union(*(_leaf_types(a) for a in args)) | ({list} if get_origin(annotation) is list else set())


# ----------------------------------------------------------------------- trial config values


def _config_values(study) -> Iterator[tuple[str, str, Any]]:
    """``(where, config key, value)`` of every value the study puts into a trial config."""
    for key, value in study.params.items():
        yield f"params.{key}", key, value
    for factor, levels in study.ablation.factors.items():
        if isinstance(levels, list):
            for value in levels:
                yield f"ablation.factors.{factor}", factor, value
        else:
            for level, values in levels.items():
                for key, value in values.items():
                    yield f"ablation.factors.{factor}.{level}.{key}", key, value
    for key, values in (study.search.grid if study.search else {}).items():
        for value in values:
            yield f"search.grid.{key}", key, value


def _tag_problem(where: str, what: str, timm_name: str) -> str | None:
    """A ``<model>.<tag>`` whose tag timm does not list for that model (timm would raise at trial start).

    ``what`` is the value as the study gives it (``backbone 'resnet18.x'``), ``timm_name`` timm's name.
    """
    model, _, tag = timm_name.partition(".")
    known = timm_pretrained_tags().get(model)
    if not tag or not known or tag in known:
        return None
    return (f"{where}: {what}: timm has no pretrained tag {tag!r} for {model}{_hint(tag, sorted(known))} "
            f"(tags: {', '.join(sorted(known))}; or give the model name alone for its default weights)")


def _backbone_problem(where: str, name: str) -> str | None:
    paper = module_literal("trainables._backbones", "PAPER_BACKBONES")
    timm_name = paper.get(name, name)
    if timm_name.split(".")[0] in timm_model_names():
        return _tag_problem(where, f"backbone {name!r}", timm_name)
    import difflib

    close = difflib.get_close_matches(timm_name, sorted(timm_model_names() | set(paper)), n=8, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}? (close names: {', '.join(close)})" if close else ""
    return (f"{where}: unknown backbone {name!r}{hint}. Valid: any of timm's {len(timm_model_names())} models "
            f"(python -c \"import timm; print(timm.list_models('resnet*'))\") or a paper's name: {', '.join(sorted(paper))}")


def _encoder_problem(where: str, name: str) -> str | None:
    """A segmenter ``encoder``: an smp encoder name, or ``tu-<timm model>``."""
    if name.startswith("tu-"):
        if name[3:].split(".")[0] in timm_model_names():
            return _tag_problem(where, f"encoder {name!r}", name[3:])
        return f"{where}: encoder {name!r}: {name[3:]!r} is not a timm model{_hint(name[3:], timm_model_names())}"
    valid = smp_encoder_names()
    if name in valid:
        return None
    return (f"{where}: unknown encoder {name!r}{_hint(name, valid)} (valid: {', '.join(valid)}, "
            "or tu-<timm model> for any timm backbone)")


def _augmentation_problems(where: str, spec: Any) -> list[str]:
    items = [spec] if isinstance(spec, str) else spec if isinstance(spec, list) else []
    names = [item if isinstance(item, str) else next(iter(item)) for item in items
             if isinstance(item, str) or (isinstance(item, dict) and len(item) == 1)]
    valid = augmentation_names()
    return [f"{where}: unknown augmentation {name!r}{_hint(str(name), valid)} (valid: {', '.join(valid)})"
            for name in names if name not in valid]


def _weights_problem(where: str, path: str) -> str | None:
    file = Path(path).expanduser()
    if not file.is_absolute():
        return f"{where}: {path!r} is a relative path, but trials run in their own folders; give the weights file's absolute path"
    if file.is_file():
        return None
    what = "is a folder" if file.is_dir() else "does not exist"
    return f"{where}: weights file {path!r} {what}; give a .safetensors/.pth file of the backbone, or pretrained: true (hub) / false"


def _value_problems(where: str, key: str, value: Any) -> list[str]:
    """Problems of one config value, by the config key it goes to."""
    if key == "backbone" and isinstance(value, str):
        return [p for p in [_backbone_problem(where, value)] if p]
    if key == "encoder" and isinstance(value, str):
        return [p for p in [_encoder_problem(where, value)] if p]
    if key in ("augmentation", "offline_augmentation"):
        return _augmentation_problems(where, value)
    if key == "attention" and isinstance(value, str) and value not in attention_names():
        valid = attention_names()
        return [f"{where}: unknown attention module {value!r}{_hint(value, valid)} (valid: {', '.join(valid)})"]
    if key == "pretrained" and isinstance(value, str):
        return [p for p in [_weights_problem(where, value)] if p]
    if key == "seed" and isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= SEED_MAX:
        return [f"{where}: seed {value} is outside 0..{SEED_MAX} (2**32 - 1), the seeds NumPy, Optuna and torch all accept"]
    limit = SANE_MAXIMA.get(key, _INT_MAX)
    if isinstance(value, int) and not isinstance(value, bool) and value > limit:
        return [f"{where}: {value} is beyond any sensible {key} (at most {limit})"]
    return []


# ---------------------------------------------------------------------- data, metrics, study


def _dataset(study) -> tuple[str, list[str]]:
    """``(layout, class names)`` of the study's data, read from folder names only."""
    data = study.data
    if data.is_synthetic:
        return "imagefolder", sorted(module_literal("trainables.data.synthetic", n) for n in ("_POSITIVE", "_NEGATIVE"))
    from trainables.data.folder import folder_layout

    return folder_layout(Path(data.path).expanduser())


def _data_problems(study, task: str) -> list[str]:
    if study.data.format == "coco":
        return []
    layout, classes = _dataset(study)
    from trainables import TRAINABLES

    if task == "segmentation" and not study.data.is_synthetic and layout in ("imagefolder", "presplit"):
        return [f"data.path: {study.data.path!r} is a classification folder ({layout}: <class>/*), but the "
                f"{study.trainable} trainable segments images and reads images/ + masks/ folders or COCO "
                "annotations (data.format: coco)"]
    if task == "classification" and layout.startswith("segmentation"):
        segmenters = [n for n in TRAINABLES if TRAINABLES.get(n).task == "segmentation"]
        use = f"use a segmentation trainable ({', '.join(segmenters)})" if segmenters else "no segmentation trainable is registered yet"
        return [f"data.path: {study.data.path!r} is a segmentation folder ({layout}: images/ + masks/), but the "
                f"{study.trainable} trainable classifies <class>/* folders; {use}"]
    problems = []
    for where, key, value in _config_values(study):
        if key == "positive_class" and value is not None and classes and value not in classes:
            problems.append(f"{where}: {value!r} is not a class of the dataset{_hint(str(value), classes)} "
                            f"(classes: {', '.join(classes)})")
    return problems


def _objective_problems(study, entry) -> list[str]:
    problems = []
    concrete = [m for m in entry.metrics if not any(c in m for c in "*?[")]
    for i, objective in enumerate(study.objectives):
        if not entry.reports(objective.metric):
            where = "objective.metric" if len(study.objectives) == 1 else f"objectives[{i}].metric"
            problems.append(f"{where}: the {study.trainable} trainable never reports {objective.metric!r}"
                            f"{_hint(objective.metric, concrete)} (it reports: {', '.join(entry.metrics)})")
    return problems


def config_problems(study) -> list[str]:
    """Every problem of a type-checked study's values (empty when it can run)."""
    from trainables import TRAINABLES

    entry = TRAINABLES.get(study.trainable)
    problems = _objective_problems(study, entry)
    for where, key, value in _config_values(study):
        problems += _value_problems(where, key, value)
    return problems + _data_problems(study, entry.task)


# ------------------------------------------------------------------------------ before a run


def start_problems(study, storage: str, address: Union[str, None]) -> list[str]:
    """Storage that cannot be written, and what the cluster at ``address`` lacks (joined, nothing started)."""
    from orchestrator.cluster import target_problems
    from orchestrator.storage import storage_problem

    problem = storage_problem(storage, study.name)
    return ([problem] if problem else []) + target_problems(study, storage, address)


def data_problems(study, log: Callable[[str], None]) -> list[str]:
    """Why the study's data cannot be trained on, found by scanning it (the scan is cached).

    ``log`` receives the scan's report when there is a problem.
    """
    if study.data.is_synthetic:
        return []
    from trainables import TRAINABLES
    from trainables.data.prepare import DataPreparationError, plan_dataset

    lines: list[str] = []  # the scan's report is shown with a problem (on success the run shows it)
    try:
        plan_dataset(study.data, TRAINABLES.get(study.trainable).task, lines.append)
    except DataPreparationError as err:
        for line in lines:
            log(line)
        return [str(err), "nothing was started and no study folder was created; fix the data and run again"]
    return []
