"""Finds a study's trials and their best weights from the study folder's files alone.

Trials, their cells and best values come from :func:`orchestrator.trials_table.load_trials_table`
(Ray's newest experiment state plus each trial's ``result.json``); a trial's folder from the
state's ``relative_logdir`` (or, for a trial created after the last snapshot, the folder whose
``result.json`` names it); its weights from the newest readable ``checkpoint_*/state.pt`` in that
folder, whose ``best_model`` holds the best epoch's weights, or names the checkpoint of the trial that
holds them (``trainables._runtime.best_weights`` reads either).

Example:
    >>> [trial] = select_trials(Path("corrotune-results/demo"), best=True)  # doctest: +SKIP
    >>> state = trial.best_state()  # doctest: +SKIP
    >>> state["best_epoch"], state["classes"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator.ray_repairs.experiment_state import newest_experiment_state, recorded_trials
from orchestrator.trials_table import (
    RESULT_FILE,
    best_rows_by_cell,
    best_value,
    load_trials_table,
    normalize_objectives,
    rank_rows,
)

__all__ = ["DeployError", "StudyTrial", "select_trials"]

STUDY_FILE = "corrotune_study.yaml"  # orchestrator.runner.STUDY_FILE (not imported: runner pulls in Ray's tuner)
CHECKPOINT_STATE = "state.pt"  # trainables._runtime._STATE_FILE


class DeployError(ValueError):
    """A study, trial or model cannot be exported or used; the message says why and what to do."""


@dataclass
class StudyTrial:
    """One trial of a study, as found in its folder.

    Attributes:
        study_dir: The study directory.
        study: The study's name.
        trainable: The study's trainable (``classifier``).
        objective: The primary ``(metric, mode)``.
        row: The trial's row of the trials table (``trial_id``, ``cell``, ``status``, ``best/...``).
        folder: The trial's folder.
    """

    study_dir: Path
    study: str
    trainable: str
    objective: tuple[str, str]
    row: dict[str, Any]
    folder: Path
    _state: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def trial_id(self) -> str:
        return str(self.row["trial_id"])

    @property
    def cell(self) -> str:
        return str(self.row.get("cell") or "base")

    def best_state(self) -> dict[str, Any]:
        """The newest readable checkpoint's state, with the best epoch's weights in ``best_model``.

        Raises:
            DeployError: no checkpoint, none readable, or one without best weights.
        """
        if self._state is None:
            self._state = _newest_state(self)
        return self._state

    def results(self) -> list[dict[str, Any]]:
        """The trial's reported results, in order (``result.json``)."""
        rows = []
        try:
            for line in (self.folder / RESULT_FILE).read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue  # a line being written
        except OSError:
            pass
        return rows

    def metrics(self) -> dict[str, dict[str, float]]:
        """``{"val": ..., "test": ...}``: validation metrics of the best epoch, test metrics of its
        end-of-trial test pass (absent when the trial stopped before its last epoch)."""
        state = self.best_state()
        best_epoch = state.get("best_epoch")
        history = [h for h in state.get("history") or [] if h.get("epoch") == best_epoch]
        val = {k: v for k, v in (history[-1] if history else {}).items() if k.startswith("val/") and k != "val/best" and _finite(v)}
        test: dict[str, float] = {}
        for result in self.results():
            found = {k: v for k, v in result.items() if k.startswith("test/") and _finite(v)}
            test = found or test
        return {"val": val, "test": test}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _newest_state(trial: StudyTrial) -> dict[str, Any]:
    import torch

    checkpoints = sorted(trial.folder.glob("checkpoint_*/" + CHECKPOINT_STATE), reverse=True)
    if not checkpoints:
        raise DeployError(
            f"trial {trial.trial_id} has no checkpoint in {trial.folder} (it never finished an epoch, or "
            "its checkpoints were deleted); pick another trial with --trial ID"
        )
    problems = []
    for path in checkpoints:
        try:
            # our own checkpoint: it holds RNG states (NumPy arrays), which weights_only refuses
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001 - a cut-short or foreign file: try the one before
            problems.append(f"{path.parent.name}: {type(err).__name__}: {err}")
            continue
        if isinstance(state, dict):
            from trainables._runtime import best_weights  # the one reader of the stored best weights

            try:
                state["best_model"] = best_weights(state, str(path.parent))
            except FileNotFoundError as err:
                raise DeployError(f"trial {trial.trial_id}: {err}") from None
        if not isinstance(state, dict) or state.get("best_model") is None or "config" not in state:
            raise DeployError(
                f"{path}: the checkpoint holds no best-epoch weights (best_model) and config; trainable "
                f"{trial.trainable!r} does not save what export needs"
            )
        return state
    raise DeployError(f"trial {trial.trial_id}: no readable checkpoint in {trial.folder}: " + "; ".join(problems))


def _study_facts(study_dir: Path) -> tuple[str, str, list[tuple[str, str]]]:
    """(name, trainable, objectives) from the study file the runner saved."""
    path = study_dir / STUDY_FILE
    if not path.is_file():
        raise DeployError(f"{study_dir}: not a corrotune study directory ({STUDY_FILE} is missing)")
    raw = yaml.safe_load(path.read_text()) or {}
    objectives = raw.get("objectives") or [raw.get("objective") or {}]
    pairs = [(o.get("metric", "val/accuracy"), o.get("mode", "max")) for o in objectives]
    return str(raw.get("name") or study_dir.name), str(raw.get("trainable") or "classifier"), normalize_objectives(pairs)


def _trial_folders(study_dir: Path) -> dict[str, Path]:
    """trial id → folder: Ray's state first, then folders whose ``result.json`` names a trial."""
    folders: dict[str, Path] = {}
    for trial, _ in recorded_trials((newest_experiment_state(study_dir) or {}).get("trial_data", [])):
        if trial.get("trial_id") and trial.get("relative_logdir"):
            folders[str(trial["trial_id"])] = study_dir / trial["relative_logdir"]
    for result in sorted(study_dir.glob(f"*/{RESULT_FILE}")):
        for line in result.read_text(errors="replace").splitlines()[:1]:
            try:
                trial_id = json.loads(line).get("trial_id")
            except (ValueError, AttributeError):
                continue
            if trial_id:
                folders.setdefault(str(trial_id), result.parent)
    return folders


def select_trials(
    study_dir: str | Path, trial: str | None = None, best: bool = False, best_per_cell: bool = False
) -> list[StudyTrial]:
    """The trials to use: one by id, the best one (the default), or the best of each cell.

    "Best" is by the study's primary objective, each trial scored by its best value (as the
    leaderboard and ``corrotune status`` rank them).

    Raises:
        DeployError: not a study, more than one selector, an unknown trial id (the message lists
            the known ones), or no trial that reported the objective.
    """
    study_dir = Path(study_dir).expanduser().resolve()
    if sum((trial is not None, best, best_per_cell)) > 1:
        raise DeployError("choose one of --trial ID, --best and --best-per-cell")
    name, trainable, objectives = _study_facts(study_dir)
    rows = load_trials_table(study_dir, objectives).rows()
    folders = _trial_folders(study_dir)
    objective = objectives[0]

    def found(row: dict[str, Any]) -> StudyTrial:
        folder = folders.get(str(row["trial_id"]))
        if folder is None or not folder.is_dir():
            raise DeployError(f"trial {row['trial_id']}: its folder is not in {study_dir}")
        return StudyTrial(study_dir, name, trainable, objective, row, folder)

    if trial is not None:
        matches = [r for r in rows if str(r["trial_id"]) == trial]
        if not matches:
            known = ", ".join(str(r["trial_id"]) for r in rank_rows(rows, objective)[:20]) or "none"
            raise DeployError(f"study {name}: no trial {trial!r}; its trials (best first): {known}")
        return [found(matches[0])]
    if best_per_cell:
        picked = [row for row in best_rows_by_cell(rows, objective).values() if row is not None]
    else:
        ranked = [r for r in rank_rows(rows, objective) if best_value(r, objective) is not None]
        picked = ranked[:1]
    if not picked:
        raise DeployError(f"study {name}: no trial has reported {objective[0]} yet (see corrotune status {study_dir})")
    return [found(row) for row in picked]
