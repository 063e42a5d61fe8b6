"""Keeps a trial's result files whole and free of repeats across retries and resumes.

Ray's loggers write ``result.json``/``progress.csv`` into the driver's staging folder and sync it
to storage with each experiment snapshot (every ~10 s). When a trial fails and is retried before
the next snapshot, the retry first copies the *stored* files back over the staging ones
(``LoggerCallback._restore_from_remote``), so the epochs reported since the last snapshot vanish.
:class:`UploadBeforeRetry` uploads the staging files as soon as Ray decides to retry.

Ray records a result and registers that result's checkpoint in two steps; a snapshot taken in
between resumes the trial from the checkpoint before, so it reports that result again.
:class:`DropRepeatedResults` removes the rows a (re)started trial is about to report again.

Each snapshot copies the whole staging folder, so every trial that ever ran has its files
rewritten with every snapshot: O(trials) per snapshot, O(trials²) per study.
:class:`SettleEndedTrials` marks an ended trial's staged files final
(:func:`~orchestrator.ray_repairs.atomic_fs.settle`): the next snapshot copies them once more,
later ones leave them alone.

Private Ray names used: none (public ``tune.Callback`` hooks; Ray's trial folder layout).
Upstream: ray-project/ray#5263 (results after a trial's fail and restore lost), #4187 (a
restored trial's rows repeated).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

from ray import tune

__all__ = ["DropRepeatedResults", "SettleEndedTrials", "UploadBeforeRetry"]

logger = logging.getLogger(__name__)

RESULT_FILES = ("result.json", "progress.csv", "params.json")


class UploadBeforeRetry(tune.Callback):
    """On ``on_trial_recover`` copies the trial's staged result files to its storage folder."""

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        from orchestrator.ray_repairs.atomic_fs import upload

        local, remote = Path(trial.local_path), Path(trial.path)
        if local == remote:
            return
        for name in RESULT_FILES:
            if (local / name).is_file():
                upload(trial.storage.storage_filesystem, local / name, remote.as_posix())


class SettleEndedTrials(tune.Callback):
    """Settles each ended trial's staged result files (local storage only; see the module doc).

    A trial that ended (``on_trial_complete``, or ``on_trial_error`` after its last retry) is
    settled at the end of that controller step, after every callback (Ray's loggers close the
    trial's files in theirs). Trials with remote storage are left to Ray's own filesystem.
    """

    def __init__(self) -> None:
        self._ended: list[Any] = []

    def __getstate__(self) -> dict[str, Any]:
        return {}  # the Tuner pickles its callbacks: no trial to carry

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()

    def setup(self, **info: Any) -> None:
        from orchestrator.ray_repairs.atomic_fs import forget_settled

        forget_settled()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended.append(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended.append(trial)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self._ended:
            self._settle()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._settle()

    def _settle(self) -> None:
        from orchestrator.ray_repairs.atomic_fs import settle, trial_is_local

        ended, self._ended = self._ended, []
        for trial in ended:
            if trial.local_path != trial.path and trial_is_local(trial):
                settle(Path(trial.local_path), trial.path)


class DropRepeatedResults(tune.Callback):
    """On a trial's first result after each (re)start, drops the rows it is about to repeat.

    Rows of the staged ``result.json`` and ``progress.csv`` whose ``training_iteration`` is at
    or after the new result's are removed. The files are rewritten in place: Ray's loggers keep
    them open for appending (and run after this callback, so the new row follows).
    """

    def __init__(self) -> None:
        self._started: set[str] = set()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._started.add(trial.trial_id)

    def on_trial_restore(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._started.add(trial.trial_id)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if trial.trial_id not in self._started:
            return
        self._started.discard(trial.trial_id)
        step = result.get("training_iteration")
        if not isinstance(step, int):
            return
        folder = Path(trial.local_path)
        dropped = _drop_json_rows(folder / "result.json", step) + _drop_csv_rows(folder / "progress.csv", step)
        if dropped:
            logger.info("trial %s resumed before iteration %d: dropped %d rows it reports again",
                        trial.trial_id, step, dropped)


def _rewrite(path: Path, keep) -> int:
    """Rewrites ``path`` in place with the lines ``keep(lines)`` returns; the number dropped."""
    if not path.is_file():
        return 0
    with path.open("r+", encoding="utf-8", newline="") as handle:
        lines = handle.read().splitlines(keepends=True)
        kept = keep(lines)
        if len(kept) == len(lines):
            return 0
        handle.seek(0)
        handle.write("".join(kept))
        handle.truncate()
    return len(lines) - len(kept)


def _drop_json_rows(path: Path, step: int) -> int:
    def keep(lines: list[str]) -> list[str]:
        out = []
        for line in lines:
            try:
                repeated = json.loads(line).get("training_iteration", 0) >= step
            except (ValueError, AttributeError, TypeError):
                repeated = False  # not ours to judge
            if not repeated:
                out.append(line)
        return out

    return _rewrite(path, keep)


def _drop_csv_rows(path: Path, step: int) -> int:
    def keep(lines: list[str]) -> list[str]:
        if not lines:
            return lines
        header = next(csv.reader(io.StringIO(lines[0])))
        if "training_iteration" not in header:
            return lines
        column = header.index("training_iteration")
        out = [lines[0]]
        for line in lines[1:]:
            row = next(csv.reader(io.StringIO(line)), [])
            try:
                repeated = int(float(row[column])) >= step
            except (IndexError, ValueError):
                repeated = False
            if not repeated:
                out.append(line)
        return out

    return _rewrite(path, keep)
