"""Puts back the result rows a driver SIGKILL left out of a trial's stored ``result.json``.

Ray behaviour repaired: Ray's driver writes each trial's ``result.json`` into its staging folder
and copies the whole staging folder (the new ``experiment_state-*.json`` and every trial's
files) to storage after each snapshot, in a background thread, file by file
(``StorageContext.syncer.sync_up`` → ``pyarrow.fs.copy_files``). A driver killed during that copy
can leave storage with the new experiment state but a trial's older ``result.json``: the state
resumes the trial from its checkpoint at iteration N while the file ends at M < N.
``Tuner.restore`` copies that file back into the new staging folder
(``LoggerCallback._restore_from_remote``) and the trial goes on with N + 1, so rows M + 1 .. N
were lost for good (the checkpoint and W&B still had them), and with them the epochs of
``trials.csv`` and the rows the W&B run is completed from. No upstream issue.

:func:`restore_lost_rows` runs before ``Tuner.restore``. For each trial of the newest experiment
state that resumes from a checkpoint of its own, it rebuilds the rows its ``result.json`` lacks
up to that checkpoint's iteration (and, for a finished trial, up to its last result): from the
whole results Ray's state keeps (the trial's last result and those of its registered
checkpoints), else from the checkpoint's ``history`` (every corrotune trainable stores the numeric
metrics of each epoch in it: ``trainables._runtime.checkpoint_history``), with
``training_iteration`` and ``trial_id`` set. Rows an earlier start reported again (an iteration
at or below one before it) keep only the newest start's, as ``DropRepeatedResults``
(:mod:`orchestrator.ray_repairs.trial_files`) does while a trial runs. The file is then
rewritten whole, each iteration once, in order.

Private Ray names used: ``ray.tune.trainable.metadata._TrainingRunMetadata`` (to decode a trial's
run metadata) and its checkpoint manager's ``latest_checkpoint_result`` /
``best_checkpoint_results`` (``ray.train._internal.checkpoint_manager._CheckpointManager``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Mapping

from corrotune.files import write_text

__all__ = ["drop_restarted_rows", "rebuilt_rows", "restore_lost_rows"]

logger = logging.getLogger(__name__)

RESULT_FILE = "result.json"
STEP = "training_iteration"


def _read_rows(path: Path) -> list[dict[str, Any]] | None:
    """The rows of ``path`` (a line cut short is dropped); None when a whole line is not a result."""
    rows = []
    lines = path.read_text().splitlines() if path.is_file() else []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            if i == len(lines) - 1:  # the tail of a write cut short
                continue
            return None
        if not isinstance(row, dict) or not isinstance(row.get(STEP), int):
            return None  # not Ray's: not ours to rewrite
        rows.append(row)
    return rows


def drop_restarted_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with each iteration once: a row at or below an earlier one's iteration (a start
    from an older checkpoint, or from scratch) drops the earlier rows at or after it."""
    kept: list[dict[str, Any]] = []
    for row in rows:
        if kept and row[STEP] <= kept[-1][STEP]:
            kept = [k for k in kept if k[STEP] < row[STEP]]
        kept.append(row)
    return kept


def rebuilt_rows(
    present: set[int],
    upto: int,
    history: list[Mapping[str, Any]] | None,
    history_step: int,
    whole: Mapping[int, Mapping[str, Any]],
    trial_id: str,
) -> dict[int, dict[str, Any]]:
    """The rows of iterations ``1..upto`` not in ``present`` that can be rebuilt.

    Args:
        present: Iterations the file holds.
        upto: The last iteration the file must hold.
        history: The checkpoint's per-epoch metrics, one entry per report, oldest first (None: none).
        history_step: The iteration of the checkpoint (its last history entry).
        whole: Whole results Ray's state keeps, by iteration (preferred to history entries).
        trial_id: Set in rows rebuilt from history.
    """
    rows = {}
    first = history_step - len(history) + 1 if history else history_step + 1
    for step in range(1, upto + 1):
        if step in present:
            continue
        if step in whole:
            rows[step] = dict(whole[step])
        elif history and first <= step <= history_step:
            rows[step] = {**history[step - first], STEP: step, "trial_id": trial_id}
    return rows


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    write_text(path, "".join(json.dumps(row, default=str) + "\n" for row in rows))


def _whole_results(run: Mapping[str, Any]) -> tuple[Any, dict[int, dict[str, Any]]]:
    """``(latest checkpoint result or None, {iteration: whole result})`` of a trial's run metadata."""
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    meta = _TrainingRunMetadata.from_json_state(json.dumps(run))
    manager = meta.checkpoint_manager
    latest = manager.latest_checkpoint_result if manager else None
    whole = {r.metrics[STEP]: r.metrics for r in (manager.best_checkpoint_results if manager else [])
             if isinstance(r.metrics.get(STEP), int)}
    if isinstance((meta.last_result or {}).get(STEP), int):
        whole[meta.last_result[STEP]] = meta.last_result
    return latest, whole


def repair_trial(folder: Path, trial: Mapping[str, Any], run: Mapping[str, Any]) -> list[int]:
    """Rewrites ``folder/result.json`` with the rows it lacks or repeats; the iterations rebuilt.

    Args:
        folder: The trial's folder in the study directory.
        trial: The trial's entry in Ray's experiment state.
        run: Its run metadata there.
    """
    from trainables._runtime import checkpoint_history

    latest, whole = _whole_results(run)
    if latest is None or latest.checkpoint is None or not isinstance(latest.metrics.get(STEP), int):
        return []  # resumes from scratch: Ray starts a new file
    recorded = PurePosixPath(str(latest.checkpoint.path).rstrip("/"))
    if recorded.parent.name != folder.name:  # another trial's (PBT): its history is not this trial's
        return []
    checkpoint = folder / recorded.name  # where the study folder is now
    path = folder / RESULT_FILE
    rows = _read_rows(path)
    if rows is None:
        logger.warning("%s holds lines that are not Ray results; left as it is", path)
        return []
    kept = drop_restarted_rows(rows)
    step = latest.metrics[STEP]
    upto = max(step, *whole) if trial.get("status") == "TERMINATED" and whole else step  # finished: nothing reports again
    present = {r[STEP] for r in kept}
    history = None
    if any(s not in present for s in range(1, upto + 1) if s not in whole):
        try:
            history = checkpoint_history(str(checkpoint))
        except OSError as err:
            logger.warning("could not read the history of %s: %s", checkpoint, err)
    rebuilt = rebuilt_rows(present, upto, history, step, whole, trial.get("trial_id", ""))
    if unknown := [s for s in range(1, upto + 1) if s not in present and s not in rebuilt]:
        logger.warning("%s lacks iteration(s) %s and neither Ray's state nor %s holds them (no history)",
                       path, _ranges(unknown), checkpoint.name)
    if rebuilt or len(kept) != len(rows):
        _write_rows(path, sorted([*kept, *rebuilt.values()], key=lambda r: r[STEP]))
    return sorted(rebuilt)


def restore_lost_rows(study_dir: Path, log: Callable[[str], None]) -> dict[str, list[int]]:
    """Repairs the ``result.json`` of every trial in the study's newest experiment state.

    Call it before ``Tuner.restore`` (which copies these files into its staging folder).

    Args:
        study_dir: The local study directory.
        log: Where to say which rows were rebuilt.

    Returns:
        ``{trial folder: iterations rebuilt}`` of the trials that had rows rebuilt.
    """
    from orchestrator.ray_repairs.experiment_state import newest_experiment_state, recorded_trials

    state = newest_experiment_state(study_dir) or {}
    repaired = {}
    for trial, run in recorded_trials(state.get("trial_data", [])):
        folder = study_dir / PurePosixPath(trial.get("relative_logdir", "")).name
        if not trial.get("relative_logdir") or not folder.is_dir():
            continue
        try:
            rebuilt = repair_trial(folder, trial, run)
        except (OSError, ValueError, KeyError, TypeError) as err:  # one trial's damage never stops the resume
            logger.warning("could not check the results of %s: %s", folder.name, err)
            continue
        if rebuilt:
            repaired[folder.name] = rebuilt
            log(f"{folder.name}/{RESULT_FILE} lacked iteration(s) {_ranges(rebuilt)} that its checkpoint "
                "recorded (the driver was killed while copying it); put back")
    return repaired


def _ranges(steps: list[int]) -> str:
    """``[3, 4, 5, 8]`` → ``"3-5, 8"``."""
    parts, start = [], None
    for i, step in enumerate(steps):
        start = step if start is None else start
        if i + 1 == len(steps) or steps[i + 1] != step + 1:
            parts.append(f"{start}-{step}" if step != start else str(step))
            start = None
    return ", ".join(parts)
