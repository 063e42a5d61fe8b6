"""What a report is made of, read from a study folder: the study, its trials and each cell's runs.

Reads ``corrotune_study.yaml`` (the resolved study ``run`` saved), ``trials.csv`` (rebuilt from
Ray's files when it is missing) and, for curves, each trial's ``result.json``. Works on a study
that is still running or that crashed: only finished trials count, the rest is listed as missing.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import ValidationError

from corrotune.registry import closest
from orchestrator.spec import Study, cell_label
from orchestrator.trials_table import RESULT_FILE, TRIALS_FILE, load_trials_table

__all__ = ["CellRuns", "ReportError", "StudyData", "gather", "read_history", "trial_folders"]

STUDY_FILE = "corrotune_study.yaml"  # orchestrator.runner.STUDY_FILE (runner imports Ray; this stays light)
FINISHED = "TERMINATED"


class ReportError(ValueError):
    """A study folder that cannot be reported on; the message says why and what to do."""


@dataclass
class CellRuns:
    """The finished runs of one cell that the report compares.

    Attributes:
        label: ``"attention=eca,pooling=gmp"``.
        levels: Factor -> level label.
        values: The report metric of each finished run.
        seeds: Each run's seed (same order as ``values``).
        rows: The runs' ``trials.csv`` rows.
        planned: How many runs of this phase the study plans for the cell.
    """

    label: str
    levels: dict[str, str]
    values: list[float] = field(default_factory=list)
    seeds: list[Any] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    planned: int = 0


@dataclass
class StudyData:
    """Everything the statistics and plots read."""

    study_dir: Path
    study: Study
    rows: list[dict[str, Any]]
    metric: str  # the report metric as the user knows it (``test/accuracy``)
    column: str  # the trials.csv column it is read from (``last/test/accuracy``)
    mode: str  # max or min
    split: str  # test or val
    phase: str  # confirm or search
    cells: list[CellRuns]
    baseline: str
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def metric_values(self, cell: CellRuns, metric: str) -> list[float]:
        """Another metric of a cell's runs (``test/f1``), read as the report metric is."""
        column = _column_for(metric, self.study, self.rows)
        return [v for row in cell.rows if (v := _number(row.get(column))) is not None]


def _number(value: Any) -> Optional[float]:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _load_study(study_dir: Path) -> Study:
    path = study_dir / STUDY_FILE
    if not path.is_file():
        raise ReportError(f"{study_dir}: not a corrotune study folder ({STUDY_FILE} is missing); "
                          "pass the folder `corrotune run` created, <storage>/<study name>")
    try:
        raw = yaml.safe_load(path.read_text())
        # the typed sections only: the data folder may have moved since the study ran
        return Study.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as err:
        raise ReportError(f"{path}: the saved study cannot be read ({str(err).splitlines()[0]})") from None


def _read_rows(study_dir: Path, study: Study) -> list[dict[str, Any]]:
    path = study_dir / TRIALS_FILE
    if path.is_file():
        with path.open(newline="") as handle:
            return list(csv.DictReader(handle))
    objectives = [(o.metric, o.mode) for o in study.objectives]
    return [{k: ("" if v is None else v) for k, v in row.items()} for row in load_trials_table(study_dir, objectives).rows()]


def _mode_of(metric: str, study: Study) -> str:
    for objective in study.objectives:
        if objective.metric == metric:
            return objective.mode
    name = metric.split("/", 1)[-1]
    return "min" if name.endswith("loss") else "max"


def _has(rows: list[dict[str, Any]], column: str) -> bool:
    return any(_number(row.get(column)) is not None for row in rows)


def _column_for(metric: str, study: Study, rows: list[dict[str, Any]]) -> str:
    """The trials.csv column of a metric: an objective's best epoch, else its last value."""
    if metric in {o.metric for o in study.objectives} and _has(rows, f"best/{metric}"):
        return f"best/{metric}"
    return f"last/{metric}"


def _resolve_metric(requested: Optional[str], study: Study, rows: list[dict[str, Any]]) -> tuple[str, str, list[str]]:
    """``(metric, column, notes)``: by default the objective, on test when trials report it."""
    notes = []
    metric = requested or study.objective.metric
    if requested is None and metric.startswith("val/"):
        test = "test/" + metric.removeprefix("val/")
        if _has(rows, f"last/{test}"):
            notes.append(f"{test} is the study objective {metric} scored on the test split "
                         "(with the weights of each run's best validation epoch)")
            metric = test
        else:
            notes.append(f"the trials report no {test}: the objective is scored on the validation split")
    column = _column_for(metric, study, rows)
    if not _has(rows, column):
        known = sorted({k.split("/", 1)[1] for row in rows[:1] for k in row if k.startswith(("last/", "best/"))})
        hint = closest(metric, known)
        raise ReportError(f"no trial reports {metric!r}" + (f"; did you mean {hint!r}?" if hint else "")
                          + (f" (reported: {', '.join(known)})" if known else " (no trial has reported yet)"))
    if column.startswith("best/"):
        notes.append(f"{metric}: each run's best epoch")
    elif metric.startswith("val/"):
        notes.append(f"{metric}: each run's last epoch (not an objective, so no best epoch is kept)")
    return metric, column, notes


def _pick_baseline(requested: Optional[str], labels: list[str]) -> str:
    if requested is None:
        return labels[0]  # the first level of every factor
    if requested not in labels:
        hint = closest(requested, labels)
        raise ReportError(f"--baseline {requested!r} is not a cell of this study"
                          + (f"; did you mean {hint!r}?" if hint else "") + f" (cells: {', '.join(labels)})")
    return requested


def gather(study_dir: str | Path, metric: Optional[str] = None, baseline: Optional[str] = None) -> StudyData:
    """Reads a study folder into :class:`StudyData`.

    Args:
        study_dir: The study folder (``<storage>/<name>``).
        metric: The metric to compare (default: the objective, on test when reported).
        baseline: The cell the others are compared with (default: first level of every factor).

    Raises:
        ReportError: not a study folder, no trial has reported the metric, unknown baseline.
    """
    study_dir = Path(study_dir)
    study = _load_study(study_dir)
    rows = _read_rows(study_dir, study)
    if not rows:
        raise ReportError(f"{study_dir}: no trial has started yet (no trials in {TRIALS_FILE} or Ray's state)")
    metric, column, notes = _resolve_metric(metric, study, rows)
    finished = [r for r in rows if r.get("status") == FINISHED and _number(r.get(column)) is not None]
    phase = "confirm" if any(r.get("phase") == "confirm" for r in finished) else "search"
    if phase == "search":
        notes.append("the study has no finished confirm runs: cells are compared over their search trials "
                     "(each a different configuration, so the spread is not seed noise)")
    planned = study.repeats if phase == "confirm" else study.trials_per_cell
    cells, missing, stopped = [], [], 0
    for levels, _ in study.cells:
        label = cell_label(levels)
        cell = CellRuns(label=label, levels=dict(levels), planned=planned)
        for row in rows:
            if row.get("cell") != label or row.get("phase") != phase:
                continue
            value = _number(row.get(column))
            if row.get("status") == FINISHED and value is not None:
                cell.values.append(value)
                cell.seeds.append(_number(row.get("seed")))
                cell.rows.append(row)
            elif row.get("status") == FINISHED and _stopped_early(row):
                cell.planned -= 1  # the scheduler's choice, not a run still to come
                stopped += 1
            else:
                missing.append(f"{label}: trial {row.get('trial_id')} is {row.get('status') or 'unknown'}"
                               + (f" (no {metric})" if row.get("status") == FINISHED else ""))
        if len(cell.values) < cell.planned:
            missing.append(f"{label}: {len(cell.values)} of {cell.planned} {phase} runs finished")
        cells.append(cell)
    if stopped:
        by = "early" if study.scheduler.name == "fifo" else f"early by the {study.scheduler.name} scheduler"
        notes.append(f"{stopped} {phase} trial(s) were stopped {by}: they have "
                     f"no {metric} (a trial scores it only when it runs its whole budget) and are not compared")
    labels = [c.label for c in cells]
    return StudyData(
        study_dir=study_dir, study=study, rows=rows, metric=metric, column=column, mode=_mode_of(metric, study),
        split=metric.split("/", 1)[0], phase=phase, cells=cells, baseline=_pick_baseline(baseline, labels),
        notes=notes, missing=missing,
    )


def _stopped_early(row: dict[str, Any]) -> bool:
    """A finished trial that ran fewer epochs than its budget: a scheduler (ASHA, HyperBand) stopped it."""
    ran, budget = _number(row.get("epochs")), _number(row.get("config/epochs"))
    return ran is not None and budget is not None and ran < budget


def trial_folders(study_dir: Path) -> dict[str, Path]:
    """Trial id -> its folder (``runner._trial_dirname``: ``<trainable>_<id>``; the first by name), from one listing."""
    folders: dict[str, Path] = {}
    for folder in sorted(study_dir.glob("*_*")):
        name = folder.name
        for at, char in enumerate(name):  # every id the name ends in after a "_", as glob("*_<id>") matches
            if char == "_":
                folders.setdefault(name[at + 1:], folder)
    return folders


def read_history(study_dir: Path, row: dict[str, Any], folders: dict[str, Path] | None = None) -> list[dict[str, Any]]:
    """The results a trial reported, from its ``result.json`` (empty when it has none).

    Args:
        folders: :func:`trial_folders` of ``study_dir``, for a caller that reads many trials
            (a listing per trial made a report of n trials cost O(n²)).
    """
    folder = (folders if folders is not None else trial_folders(study_dir)).get(str(row.get("trial_id")))
    if folder is None:
        return []
    path = folder / RESULT_FILE
    results = []
    try:
        with path.open() as handle:
            for line in handle:
                try:
                    results.append(json.loads(line))
                except ValueError:
                    continue  # a line being written
    except OSError:
        return []
    return [r for r in results if isinstance(r, dict)]
