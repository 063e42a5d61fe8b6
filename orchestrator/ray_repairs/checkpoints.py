"""Keeps a trial's best checkpoints without deleting the one a resume would need.

Ray's ``CheckpointConfig(num_to_keep=K)`` deletes a superseded checkpoint the moment the next one
is registered, but the experiment state in storage (what ``Tuner.restore`` reads) is written
seconds later. A driver killed in between leaves a state that points at a deleted folder: the
resumed trial fails to load it and, after its retries, ends in ERROR.

:class:`CheckpointPruner` takes over from each trial's Ray checkpoint manager (it tells them to
keep everything; Ray's controller still snapshots the state every ``K`` checkpoints of a trial,
which keeps a resume close to where the driver died). After each checkpoint it deletes the
trial's checkpoints that are neither among its ``K`` best by the objective, nor its latest, nor
at or after the checkpoint the *stored* experiment state would resume it from. The stored state
only moves forward, so nothing a resume can reach is deleted; what is held back is deleted at
the trial's next checkpoint, its end, or after the final snapshot.

The trainable stores its best weights once, in the checkpoint of the epoch that became best, and
later checkpoints refer to it (``trainables._runtime.BEST_REF_KEY``): a checkpoint another kept one
refers to (by the reported ``epoch`` / ``best_epoch``) is kept as well. When a trial has finished,
only its last checkpoint stays (the trainable slimmed it to the best weights, config and history:
what export and the report read; PBT never clones a finished trial).

It also makes Ray store each newly registered checkpoint with the next snapshot (Ray serialises a
trial's run state once per result and did not notice the registration that follows it).

Private Ray names used: ``ray.tune.execution.experiment_state._find_newest_experiment_checkpoint``,
``ray.tune.trainable.metadata._TrainingRunMetadata`` (``from_json_state``, ``invalidate_cache``),
``_CheckpointManager._checkpoint_config`` and ``._checkpoint_results`` (set). Upstream: Ray's own
fallback for a checkpoint lost with the driver, ray-project/ray#27790 / #29099, restarts from an
older checkpoint instead of keeping the needed one.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ray import tune

__all__ = ["CheckpointPruner", "stored_latest_checkpoints"]

logger = logging.getLogger(__name__)


@dataclass
class _Saved:
    name: str  # "checkpoint_000003": unique within a trial, whatever the storage root
    path: str
    score: float  # higher is better; NaN/missing ranks lowest
    epoch: Any = None  # reported ``epoch`` and ``best_epoch``: which checkpoint holds the best weights
    best_epoch: Any = None


def _newest_local_state(folder: str) -> str | None:
    """The newest ``experiment_state-*.json`` in a local folder, by name (as Ray picks it).

    Names only: Ray's listing builds a ``FileInfo`` (a stat) and a ``relpath`` for every entry,
    and the study folder holds one per trial (0.15 s at 1,000 trials, read every few seconds).
    """
    from ray.tune.execution.tune_controller import TuneController

    pattern = TuneController.CKPT_FILE_TMPL.format("*")
    with os.scandir(folder) as entries:
        matching = [entry.name for entry in entries if fnmatch.fnmatch(entry.name, pattern)]
    return f"{folder.rstrip('/')}/{max(matching)}" if matching else None


def _newest_state(storage: Any) -> tuple[str, int, int] | None:
    """``(path, mtime_ns, size)`` of the newest experiment state file in storage (None: none yet)."""
    from ray.tune.execution.experiment_state import _find_newest_experiment_checkpoint

    from orchestrator.ray_repairs.atomic_fs import is_local

    try:
        if is_local(storage.storage_filesystem):
            newest = _newest_local_state(storage.experiment_fs_path)
        else:
            newest = _find_newest_experiment_checkpoint(storage.experiment_fs_path, fs=storage.storage_filesystem)
        if newest is None:
            return None
        info = storage.storage_filesystem.get_file_info(newest)
    except OSError as err:
        logger.debug("could not list the stored experiment state: %s", err)
        return None
    return newest, info.mtime_ns or 0, info.size or 0


def stored_latest_checkpoints(state_file: str, filesystem: Any, wanted: set[str] | None = None) -> dict[str, str] | None:
    """``{trial_id: checkpoint folder name}`` a resume from ``state_file`` would continue each trial from.

    ``state_file`` is an ``experiment_state-*.json`` on ``filesystem``; trials without a checkpoint
    (or, given ``wanted``, not in it: decoding a trial's run state is the costly part of a large
    study's state) are absent. None when it cannot be read (e.g. being replaced right now).
    """
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    try:
        with filesystem.open_input_stream(state_file) as stream:
            trial_data = json.loads(stream.read())["trial_data"]
        latest = {}
        for trial_json, run_json in trial_data:
            trial_id = json.loads(trial_json)["trial_id"]
            if wanted is not None and trial_id not in wanted:
                continue
            manager = _TrainingRunMetadata.from_json_state(run_json).checkpoint_manager
            result = manager.latest_checkpoint_result if manager else None
            if result is not None and result.checkpoint is not None:
                latest[trial_id] = PurePosixPath(result.checkpoint.path).name
        return latest
    except (OSError, ValueError, KeyError, TypeError) as err:  # being written, or from another Ray
        logger.debug("could not read the stored experiment state: %s", err)
        return None


def _take_over(trial: Any) -> None:
    """Stops Ray's checkpoint manager of ``trial`` from deleting checkpoints itself.

    Called from ``on_checkpoint``, which Ray runs before it registers (and would prune) each one.
    """
    manager = trial.run_metadata.checkpoint_manager
    if manager is not None and manager.checkpoint_config.num_to_keep is not None:
        manager._checkpoint_config = dataclasses.replace(manager.checkpoint_config, num_to_keep=None)
        trial.run_metadata.invalidate_cache()


def _ran_every_epoch(trial: Any) -> bool:
    """Whether ``trial`` reported its last epoch (its trainable then slims that checkpoint)."""
    epochs = (getattr(trial, "config", None) or {}).get("epochs")
    return epochs is not None and (trial.last_result or {}).get("epoch") == epochs


class CheckpointPruner(tune.Callback):
    """Deletes checkpoints beyond the ``num_to_keep`` best (by ``metric``) once no resume needs them.

    Pass Ray the same ``CheckpointConfig(num_to_keep=K)``: its controller then snapshots the
    experiment state every ``K`` checkpoints of a trial, and this callback stops its per-trial
    managers from deleting anything themselves.

    Args:
        num_to_keep: Best checkpoints to keep per trial (the latest is always kept as well).
        metric: Result key that scores a checkpoint.
        mode: ``"max"`` or ``"min"``.
        min_read_interval_s: Least time between two reads of the stored experiment state (a
            study of many trials snapshots a large state often).
    """

    def __init__(self, num_to_keep: int, metric: str, mode: str, min_read_interval_s: float = 2.0):
        if num_to_keep < 1:
            raise ValueError(f"num_to_keep must be >= 1, got {num_to_keep}")
        self._num_to_keep = num_to_keep
        self._metric = metric
        self._sign = 1.0 if mode == "max" else -1.0
        self._saved: dict[str, list[_Saved]] = {}  # per trial, oldest first
        self._min_read_interval_s = min_read_interval_s
        self._read_at = -math.inf
        self._state_key: tuple | None = None
        self._covered: set[str] = set()  # the trials the last read decoded
        self._stored: dict[str, str] = {}

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        saved = self._saved.get(trial.trial_id)
        if saved is None:  # first seen in this session: what a restored trial had already saved
            saved = self._saved[trial.trial_id] = self._restored(trial)
            _take_over(trial)
        name = PurePosixPath(checkpoint.path).name
        saved[:] = [s for s in saved if s.name != name]
        saved.append(self._entry(name, checkpoint.path, trial.last_result))
        self._prune(trial)

    def on_trial_save(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # Ray has just registered the checkpoint, but its trial state JSON is cached since the
        # result: without this the next snapshot (even the one the checkpoint forces) would store
        # the trial without its newest checkpoint, and a resume would go back one checkpoint.
        trial.run_metadata.invalidate_cache()

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id in self._saved:
            self._prune(trial, finished=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id in self._saved:  # its checkpoints still hold the optimiser: a retry needs them
            self._prune(trial)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        # Ray calls this after its final snapshot, so what was held back can go now; the stored
        # state is read once for all trials (once per trial was O(n^2) at the end of a large study)
        fresh = True
        for trial in trials:
            if trial.trial_id in self._saved:
                self._prune(trial, fresh=fresh, finished=getattr(trial, "status", None) == "TERMINATED")
                fresh = False

    def _entry(self, name: str, path: str, metrics: dict[str, Any] | None) -> _Saved:
        metrics = metrics or {}
        return _Saved(name, path, self._score(metrics), metrics.get("epoch"), metrics.get("best_epoch"))

    def _score(self, metrics: dict[str, Any] | None) -> float:
        value = (metrics or {}).get(self._metric)
        try:
            return self._sign * float(value)
        except (TypeError, ValueError):
            return math.nan

    def _restored(self, trial: Any) -> list[_Saved]:
        manager = trial.run_metadata.checkpoint_manager
        results = list(manager.best_checkpoint_results) if manager else []
        latest = manager.latest_checkpoint_result if manager else None
        if latest is not None and latest not in results:
            results.append(latest)
        saved = [self._entry(PurePosixPath(r.checkpoint.path).name, r.checkpoint.path, r.metrics)
                 for r in results if r.checkpoint is not None]
        return sorted(saved, key=lambda s: s.name)  # Ray names them in the order they were saved

    def _resumable_from(self, trial: Any, fresh: bool = False) -> str | None:
        """The checkpoint the stored experiment state would resume ``trial`` from (None: none).

        The state is re-read when it changed, at most every ``min_read_interval_s`` unless
        ``fresh``: an older state only holds more checkpoints back, never deletes a needed one.
        """
        if not fresh and time.monotonic() - self._read_at < self._min_read_interval_s:
            return self._stored.get(trial.trial_id)
        key = _newest_state(trial.storage)
        # only trials with something to delete (one checkpoint left: it is the latest, kept)
        wanted = {trial_id for trial_id, saved in self._saved.items() if len(saved) > 1}
        if key is not None and (key != self._state_key or not wanted <= getattr(self, "_covered", set())):
            stored = stored_latest_checkpoints(key[0], trial.storage.storage_filesystem, wanted)
            if stored is not None:
                self._stored, self._state_key, self._covered = stored, key, wanted
        self._read_at = time.monotonic()
        return self._stored.get(trial.trial_id)

    @staticmethod
    def _referenced(saved: list[_Saved], kept: set[str]) -> set[str]:
        """The checkpoints holding the best weights that the ``kept`` ones refer to."""
        referenced = set()
        for i, entry in enumerate(saved):
            if entry.name not in kept or entry.best_epoch is None:
                continue
            holder = next((s for s in reversed(saved[: i + 1]) if s.epoch == entry.best_epoch), None)
            if holder is not None:
                referenced.add(holder.name)
        return referenced

    def _prune(self, trial: Any, fresh: bool = False, finished: bool = False) -> None:
        saved = self._saved[trial.trial_id]
        if len(saved) <= 1:  # the latest is always kept
            return
        resumable = self._resumable_from(trial, fresh)
        names = [s.name for s in saved]
        if resumable not in names:  # the stored state resumes from none of these yet: keep them all
            return
        ranked = sorted(saved, key=lambda s: (not math.isnan(s.score), 0.0 if math.isnan(s.score) else s.score))
        keep_from = names.index(resumable)
        if finished and _ran_every_epoch(trial):  # the trainable slimmed its last checkpoint: it holds the best weights
            best: set[str] = set()
        else:  # running, or stopped early by the scheduler: keep the checkpoints holding the best weights
            best = set() if finished else {s.name for s in ranked[-self._num_to_keep:]}
            best |= self._referenced(saved, best | set(names[keep_from:]) | {names[-1]})
        doomed = [s for i, s in enumerate(saved[:-1]) if i < keep_from and s.name not in best]
        if not doomed:
            return
        filesystem = trial.storage.storage_filesystem
        for entry in doomed:
            try:
                filesystem.delete_dir(entry.path)
            except FileNotFoundError:
                pass
            except OSError as err:  # kept on disk; tried again after the next checkpoint
                logger.warning("could not delete checkpoint %s of trial %s: %s", entry.name, trial.trial_id, err)
                continue
            saved.remove(entry)
        self._forget(trial, {s.name for s in doomed} - {s.name for s in saved})

    @staticmethod
    def _forget(trial: Any, names: set[str]) -> None:
        """Drops deleted checkpoints from Ray's bookkeeping (its experiment state stays small)."""
        manager = trial.run_metadata.checkpoint_manager
        if manager is None or not names:
            return
        manager._checkpoint_results = [
            r for r in manager._checkpoint_results if PurePosixPath(r.checkpoint.path).name not in names
        ]
        trial.run_metadata.invalidate_cache()
