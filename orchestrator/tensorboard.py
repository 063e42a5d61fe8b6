"""TensorBoard event files per trial, written off the driver's event loop.

Ray Tune adds its ``TBXLoggerCallback`` to every run; it writes and flushes each result's
scalars on the driver loop, and opens a new ``SummaryWriter`` (a file and a thread) on each
trial's first result: the largest share of the driver's time per result in
``benchmarks/trial_overhead.py``. :class:`BackgroundTensorBoard` is that logger with its hooks
run on an ordered background lane (:class:`orchestrator._background.Background`): the same
event files, tags (``ray/tune/<metric>``) and hparams, and since its type is Ray's, Ray does not
add its own.

Where the files go: into the trial's folder in the study directory when the storage is a local
path (``tensorboard --logdir <study>`` reads them at once, and Ray's snapshots, which copy the
driver's staging folder, never wait on them); for remote storage (``s3://`` ...) into the
staging folder that Ray's snapshots upload, and at the experiment's end the lane is drained and
the event files written in this session are uploaded once more (Ray's last upload comes before
its callbacks' ``on_experiment_end``).

How they are written: Ray's logger opens a ``tensorboardX.SummaryWriter`` per trial, and each
starts a thread of its own that reads the events from a ``multiprocessing`` queue (with its
feeder thread) and flushes every 30 s: three threads per trial started and joined, all taking
the driver's GIL (about a fifth of the driver's busy time with no-op trials in
``benchmarks/trial_overhead.py``, in bare Ray Tune too). Here every event is written on the
lane itself, in the same format, through tensorboardX's synchronous ``EventsWriter``, with the
same summaries (``tensorboardX.summary``) Ray's logger makes: scalars, histograms for lists,
images and videos for arrays, and the trial's hparams when it ends. Each result is flushed at
once, so TensorBoard shows a step as soon as it is reported.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from ray.air.constants import TIMESTAMP, TRAINING_ITERATION
from ray.tune.logger import TBXLoggerCallback
from ray.tune.logger.tensorboardx import VALID_SUMMARY_TYPES
from ray.tune.result import PID, TIME_TOTAL_S, TIMESTEPS_TOTAL
from ray.tune.utils import flatten_dict
from ray.util.debug import log_once

from orchestrator._background import Background
from orchestrator.ray_repairs.atomic_fs import trial_is_local, upload

__all__ = ["BackgroundTensorBoard", "tensorboard_logger"]

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 120.0
"""How long the experiment's end waits for event files still being written."""

EVENT_FILES = "events.out.tfevents.*"

SKIPPED_KEYS = ("config", PID, TIMESTAMP, TIME_TOTAL_S, TRAINING_ITERATION)
"""Result keys Ray's logger leaves out of the event files (kept the same here)."""

SCALAR_TYPES = tuple(VALID_SUMMARY_TYPES)
"""What Ray's logger writes as a scalar (``bool`` is an ``int``: it is written too, as there)."""


def _default_bins() -> list[float]:
    """``tensorboardX.SummaryWriter``'s histogram buckets (TensorFlow's: +-1e-12 .. 1e20, factor 1.1)."""
    buckets, value = [], 1e-12
    while value < 1e20:
        buckets.append(value)
        value *= 1.1
    return [-b for b in reversed(buckets)] + [0.0] + buckets


class _EventFile:
    """One trial's TensorBoard event file, written synchronously by the caller (the lane).

    ``tensorboardX.SummaryWriter`` without its thread and queue: the same file name
    (``events.out.tfevents.<time>.<host>``), record framing and summaries.
    """

    _bins: list[float] | None = None  # built on first use, shared by every file

    def __init__(self, folder: str) -> None:
        from tensorboardX.event_file_writer import EventsWriter

        self._writer = EventsWriter(os.path.join(folder, "events"))

    def add(self, summary: Any, step: int | None = None) -> None:
        from tensorboardX.proto import event_pb2

        event = event_pb2.Event(summary=summary, wall_time=time.time())
        if step is not None:
            event.step = int(step)
        self._writer.write_event(event)

    def add_value(self, tag: str, value: Any, step: int) -> bool:
        """Writes ``value`` as Ray's logger would (scalar, histogram, image(s), video); False: not loggable."""
        from tensorboardX import summary

        if isinstance(value, SCALAR_TYPES):
            if np.isnan(value):
                return False
            self.add(summary.scalar(tag, value), step)
            return True
        if not ((isinstance(value, list) and value) or (isinstance(value, np.ndarray) and value.size)):
            return False
        if isinstance(value, np.ndarray) and value.ndim in (3, 4):
            self.add(summary.image(tag, value, dataformats="CHW" if value.ndim == 3 else "NCHW"), step)
        elif isinstance(value, np.ndarray) and value.ndim == 5:
            self.add(summary.video(tag, value, fps=20), step)
        else:
            if _EventFile._bins is None:
                _EventFile._bins = _default_bins()
            try:
                self.add(summary.histogram(tag, value, _EventFile._bins), step)
            except (ValueError, TypeError):  # e.g. [[]]: as Ray's logger, warn once and go on
                if log_once("corrotune-invalid-tensorboard-value"):
                    logger.warning("TensorBoard: cannot log %s=%r", tag, value)
        return True

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def tensorboard_logger() -> BackgroundTensorBoard | None:
    """The study's TensorBoard logger; ``None`` (and no event files) without ``tensorboardX``."""
    try:
        return BackgroundTensorBoard()
    except ImportError:
        logger.info("tensorboardX is not installed: no TensorBoard event files")
        return None


class _TrialFolder:
    """What the writer needs of a Ray ``Trial``: its identity and where its event files go.

    The writer runs on another thread; it must not read the live ``Trial`` (the driver mutates
    it), so each hook hands over this frozen view.
    """

    def __init__(self, trial: Any, folder: str) -> None:
        self.trial_id = trial.trial_id
        self.local_path = folder
        self.evaluated_params = dict(trial.evaluated_params or {})

    def __hash__(self) -> int:
        return hash(self.trial_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _TrialFolder) and other.trial_id == self.trial_id

    def init_local_path(self) -> None:
        Path(self.local_path).mkdir(parents=True, exist_ok=True)


class BackgroundTensorBoard(TBXLoggerCallback):
    """Ray's ``TBXLoggerCallback`` (its type: Ray adds no logger of its own), each hook queued on
    one ordered background lane, where the event files are written without ``SummaryWriter``'s
    threads (see the module doc).

    Raises:
        ImportError: ``tensorboardX`` is missing (as Ray's logger does).
    """

    def __init__(self) -> None:
        super().__init__()  # ImportError without tensorboardX
        self._lane: Background | None = None
        self._remote: dict[str, tuple[Any, str, str]] = {}  # trial id -> (filesystem, staging, storage folder)
        # on the lane only: trial id -> its open event file, and the values of its last result
        self._files: dict[str, _EventFile] = {}
        self._last: dict[str, dict[str, Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {}  # the Tuner pickles its callbacks (tuner.pkl): no thread, no open writer, nothing to keep

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def _queue(self, work: Callable[[], Any]) -> None:
        if self._lane is None:
            self._lane = Background("tensorboard")
        self._lane.submit(work)

    def _folder(self, trial: Any) -> _TrialFolder:
        if trial_is_local(trial):
            return _TrialFolder(trial, trial.path)
        self._remote[trial.trial_id] = (trial.storage.storage_filesystem, trial.local_path, trial.path)
        return _TrialFolder(trial, trial.local_path)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._queue(functools.partial(self.log_trial_start, self._folder(trial)))

    def on_trial_restore(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._queue(functools.partial(self.log_trial_restore, self._folder(trial)))

    def on_trial_save(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        pass  # Ray's logger writes nothing on a save

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._queue(functools.partial(self.log_trial_result, iteration, self._folder(trial), dict(result)))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._queue(functools.partial(self.log_trial_end, self._folder(trial), failed=False))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._queue(functools.partial(self.log_trial_end, self._folder(trial), failed=True))

    # Ray's ``LoggerCallback`` hooks, overridden: they run on the lane and write through _EventFile
    def log_trial_start(self, trial: _TrialFolder) -> None:
        if trial.trial_id in self._files:  # restarted: a new event file, as Ray's logger starts one
            self._files.pop(trial.trial_id).close()
        trial.init_local_path()
        self._files[trial.trial_id] = _EventFile(trial.local_path)
        self._last[trial.trial_id] = {}

    def log_trial_result(self, iteration: int, trial: _TrialFolder, result: dict) -> None:
        if trial.trial_id not in self._files:
            self.log_trial_start(trial)
        events = self._files[trial.trial_id]
        step = result.get(TIMESTEPS_TOTAL) or result[TRAINING_ITERATION]
        flat = flatten_dict({k: v for k, v in result.items() if k not in SKIPPED_KEYS}, delimiter="/")
        logged = {}
        for key, value in flat.items():
            tag = f"ray/tune/{key}"
            if events.add_value(tag, value, step):
                logged[tag] = value
        self._last[trial.trial_id] = logged
        events.flush()

    def log_trial_end(self, trial: _TrialFolder, failed: bool = False) -> None:
        events = self._files.pop(trial.trial_id, None)
        last = self._last.pop(trial.trial_id, {})
        if events is None:
            return
        metrics = {k: v for k, v in last.items() if isinstance(v, SCALAR_TYPES)}
        if trial.evaluated_params and metrics:
            self._write_hparams(events, trial.evaluated_params, metrics)
        events.close()

    def _write_hparams(self, events: _EventFile, params: dict[str, Any], metrics: dict[str, Any]) -> None:
        """The trial's hyperparameters beside its last metrics (TensorBoard's HPARAMS tab), as Ray's logger writes them."""
        from tensorboardX.summary import hparams

        flat = flatten_dict(params)
        kept = {k: v for k, v in flat.items() if isinstance(v, self.VALID_HPARAMS)}
        kept.update({k: v.tolist() for k, v in flat.items() if isinstance(v, self.VALID_NP_HPARAMS)})
        try:
            for summary in hparams(hparam_dict=kept, metric_dict=metrics):
                events.add(summary)
        except Exception:  # noqa: BLE001 - as Ray's logger: an odd value costs the hparams, not the trial
            logger.exception("TensorBoard: could not write the trial's hparams")

    def _close_all(self) -> None:
        """Closes the event files of trials that did not end (an interrupted experiment); each is flushed already."""
        for events in self._files.values():
            events.close()
        self._files.clear()
        self._last.clear()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._lane is not None:
            self._lane.submit(self._close_all)
            if not self._lane.drain(timeout_s=DRAIN_TIMEOUT_S):
                logger.warning("TensorBoard: %d writes not done within %.0f s; some event files may lack their last steps",
                               self._lane.pending(), DRAIN_TIMEOUT_S)
        for _, (filesystem, staging, target) in sorted(self._remote.items()):
            for path in sorted(Path(staging).glob(EVENT_FILES)):
                upload(filesystem, path, target)
        self._remote.clear()
