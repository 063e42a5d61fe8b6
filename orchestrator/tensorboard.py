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
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Callable

from ray.tune.logger import TBXLoggerCallback

from orchestrator._background import Background
from orchestrator.ray_repairs.atomic_fs import trial_is_local, upload

__all__ = ["BackgroundTensorBoard", "tensorboard_logger"]

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 120.0
"""How long the experiment's end waits for event files still being written."""

EVENT_FILES = "events.out.tfevents.*"


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
    """Ray's ``TBXLoggerCallback``, each hook queued on one ordered background lane.

    Raises:
        ImportError: ``tensorboardX`` is missing (as Ray's logger does).
    """

    def __init__(self) -> None:
        super().__init__()
        self._lane: Background | None = None
        self._remote: dict[str, tuple[Any, str, str]] = {}  # trial id -> (filesystem, staging, storage folder)

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

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._lane is not None and not self._lane.drain(timeout_s=DRAIN_TIMEOUT_S):
            logger.warning("TensorBoard: %d writes not done within %.0f s; some event files may lack their last steps",
                           self._lane.pending(), DRAIN_TIMEOUT_S)
        for _, (filesystem, staging, target) in sorted(self._remote.items()):
            for path in sorted(Path(staging).glob(EVENT_FILES)):
                upload(filesystem, path, target)
        self._remote.clear()
