"""Graceful preemption: a trial told to stop ends at its next batch boundary and loses no work.

A spot notice reaches a trial worker as SIGTERM (a termination-notice daemon, a node drain,
Kubernetes before its SIGKILL). Ray's worker handles SIGTERM itself
(``ray/_private/worker.py``, ``Worker.main_loop``: ``sigterm_handler`` raises ``SystemExit`` in the
worker's main thread), and a function trainable runs in another thread (Tune's ``RunnerThread``,
``ray/tune/trainable/function_trainable.py``), where Python allows no signal handler. So Ray's
handler is kept, and a trial registers an ``atexit`` hook instead: while ``SystemExit`` ends the
process, the hook (run before Ray's own ``shutdown`` hook: ``atexit`` runs the last registered
first) asks the training thread to stop and waits for it, at most ``CORROTUNE_PREEMPT_GRACE_S``
seconds (default 20). The sender decides when SIGKILL follows: Kubernetes after its 30 s grace
period; a raylet that kills its workers 5 s after SIGTERM (``RAY_kill_worker_timeout_milliseconds``,
5000 in Ray 2.60: raise it on the cluster where a batch takes longer).

The training thread, at its next batch boundary, writes the mid-epoch state (model, optimiser,
LR schedule, AMP scaler, the global RNGs, the epoch's batch order, its generator and the batches
done, the partial loss) to ``<trial dir>/mid_epoch/state.pt`` in the study's storage and raises
:class:`TrialPreempted`. Tune sees the worker die and retries the trial (``failure.max_failures``)
from its last epoch checkpoint; the loop finds the mid-epoch state that continues that very
checkpoint and goes on from the saved batch, so the trial ends as an uninterrupted one would.
Nothing is reported mid-epoch: no row in ``result.json``, ``trials.csv`` or W&B, and no
``training_iteration`` a scheduler counts.

The driver asks the same of every running trial when it is interrupted (Ctrl-C, SIGTERM):
it writes :data:`STOP_FILE` into the experiment directory, which trials look for at batch
boundaries, at most twice a second.

Cheap to import (torch loads on first use): the driver reads :data:`STOP_FILE` and
:data:`MID_EPOCH_DIR` from here.
"""

from __future__ import annotations

import atexit
import io
import logging
import os
import posixpath
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch

__all__ = ["MID_EPOCH_DIR", "STOP_FILE", "EpochCursor", "Preemption", "TrialPreempted", "request_stop"]

MID_EPOCH_DIR = "mid_epoch"
"""Folder of a trial (beside its checkpoints) holding the state of a preempted epoch."""

STOP_FILE = "corrotune_stop_request.json"
"""Written into the experiment directory by an interrupted driver: every trial stops at its next batch."""

_STATE_FILE = "state.pt"
_STOP_POLL_S = 0.5
_DEFAULT_GRACE_S = 20.0

logger = logging.getLogger(__name__)

_current: "Preemption | None" = None
"""The trial running in this process (Tune runs one trial per worker at a time)."""
_hook_lock = threading.Lock()
_hook_registered = False


class TrialPreempted(RuntimeError):
    """The trial stopped at a batch boundary with its mid-epoch state saved; a retry continues it."""


@dataclass
class EpochCursor:
    """Where an epoch stands: its batch order, the batches done and the loss so far.

    Attributes:
        epoch: The epoch (1-based).
        generator: The epoch's generator (batch order and augmentation draws).
        batches: The epoch's batches of sample indices, in order.
        done: Batches trained so far.
        loss_sum: Sum of ``loss · batch size`` over the batches done.
        seen: Samples trained so far.
        train_s: Training seconds of this epoch before the last restart.
    """

    epoch: int
    generator: torch.Generator
    batches: list[torch.Tensor]
    done: int = 0
    loss_sum: float = 0.0
    seen: int = 0
    train_s: float = 0.0
    on_boundary: Callable[["EpochCursor"], None] = field(default=lambda cursor: None, repr=False)

    def remaining(self) -> list[torch.Tensor]:
        """The batches not trained yet."""
        return self.batches[self.done:]

    def batch_done(self, loss_sum: float, seen: int) -> None:
        """Records a finished batch; may save the mid-epoch state and raise :class:`TrialPreempted`."""
        self.done, self.loss_sum, self.seen = self.done + 1, loss_sum, seen
        self.on_boundary(self)


def _grace_s() -> float:
    try:
        return float(os.environ.get("CORROTUNE_PREEMPT_GRACE_S", _DEFAULT_GRACE_S))
    except ValueError:
        return _DEFAULT_GRACE_S


def _on_exit() -> None:
    """``atexit``: the process ends (Ray's SIGTERM handler raised ``SystemExit``) while a trial trains."""
    trial = _current
    if trial is None or not trial.training or not trial.thread.is_alive():
        return
    trial.request("the worker process received SIGTERM (or is exiting)")
    deadline = time.monotonic() + _grace_s()
    while trial.training and trial.thread.is_alive() and time.monotonic() < deadline:
        trial.stopped.wait(0.05)


def _register_exit_hook() -> None:
    global _hook_registered
    with _hook_lock:
        if not _hook_registered:
            atexit.register(_on_exit)  # after Ray's own hooks, so it runs before them
            _hook_registered = True


def _tune_storage() -> tuple[Any, str, str] | None:
    """``(filesystem, trial folder, experiment folder)`` in the study's storage; None outside Tune."""
    try:
        from ray import tune

        storage = tune.get_context().get_storage()
        return storage.storage_filesystem, str(storage.trial_fs_path), str(storage.experiment_fs_path)
    except Exception:  # noqa: BLE001 - outside a Tune session there is no storage
        return None


def request_stop(reason: str) -> None:
    """Asks the trial training in this process to stop at its next batch boundary."""
    if _current is not None:
        _current.request(reason)


class Preemption:
    """One trial's stop watch: saves the mid-epoch state when asked to stop, and finds it again.

    A mid-epoch state names the checkpoint it continues (the trial's last reported one), and is
    used only by a run restored from that checkpoint.

    Args:
        config: The trial's resolved config (a mid-epoch state of another config is not used).
        storage: ``(filesystem, trial folder, experiment folder)``; default: the Tune session's
            (None outside Tune: a stop request then ends the trial without saving).
    """

    def __init__(self, config: dict[str, Any], storage: tuple[Any, str, str] | None = None) -> None:
        global _current
        self.config = config
        self.storage = storage if storage is not None else _tune_storage()
        self.thread = threading.current_thread()
        self.training = False
        self.stopped = threading.Event()
        self._reason: str | None = None
        self._next_poll = 0.0
        self._resumed: dict[str, Any] | None = None
        self._file_found = False  # a mid-epoch state lies in the trial folder (used or stale)
        _current = self
        _register_exit_hook()

    # ------------------------------------------------------------------ asking to stop

    def request(self, reason: str) -> None:
        """Stop at the next batch boundary (thread-safe)."""
        self._reason = self._reason or reason

    def _stop_reason(self) -> str | None:
        if self._reason is None and self.storage is not None and time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + _STOP_POLL_S
            filesystem, _, experiment = self.storage
            try:
                requested = filesystem.get_file_info(posixpath.join(experiment, STOP_FILE)).type.name != "NotFound"
            except OSError:
                requested = False
            if requested:
                self.request("the driver was interrupted and asked every trial to stop")
        return self._reason

    # ------------------------------------------------------------------ the mid-epoch state

    def _path(self) -> str | None:
        return posixpath.join(self.storage[1], MID_EPOCH_DIR, _STATE_FILE) if self.storage else None

    def resume(self, state: dict[str, Any] | None) -> dict[str, Any] | None:
        """The loop state to start from: ``state`` (the restored checkpoint), or, when a
        preempted epoch continues that very checkpoint, ``state`` updated with the mid-epoch one."""
        path = self._path()
        if path is None:
            return state
        import torch

        from trainables._runtime import reported_checkpoint_name

        filesystem = self.storage[0]
        try:
            with filesystem.open_input_file(path) as stream:
                mid = torch.load(io.BytesIO(stream.read()), map_location="cpu", weights_only=False)
        except (FileNotFoundError, OSError):
            return state
        self._file_found = True
        base_epoch, base = (state["epoch"], reported_checkpoint_name()) if state else (0, None)
        cursor = mid.get("mid_epoch", {})
        if (cursor.get("base"), cursor.get("epoch")) != (base, base_epoch + 1) or mid.get("config") != self.config:
            logger.info("ignoring %s: it continues another checkpoint (%s) than this trial resumed from (%s)",
                        path, cursor.get("base"), base)
            return state
        self._resumed = cursor
        start = state or {"epoch": 0, "best_score": None, "best_epoch": 0, "best_model": None, "history": []}
        logger.info("continuing epoch %d at batch %d of %d (mid-epoch state of a preempted run)",
                    cursor["epoch"], cursor["done"] + 1, len(cursor["batches"]))
        return {**start, **{k: v for k, v in mid.items() if k != "mid_epoch"}, "epoch": base_epoch}

    def cursor(
        self, epoch: int, generator: torch.Generator, batches: list[torch.Tensor], snapshot: Callable[[], dict[str, Any]]
    ) -> EpochCursor:
        """The cursor of ``epoch`` (continued where a preempted run stopped, if so).

        ``snapshot`` returns the loop's state at a batch boundary (model, optimiser, schedule,
        scaler, phase, elapsed time, config): it is saved when the trial is asked to stop.
        """
        cursor = EpochCursor(epoch, generator, batches)
        saved = self._resumed
        if saved is not None and saved["epoch"] == epoch:
            generator.set_state(saved["generator"])
            cursor.batches, cursor.done = saved["batches"], saved["done"]
            cursor.loss_sum, cursor.seen, cursor.train_s = saved["loss_sum"], saved["seen"], saved["train_s"]
        started = time.perf_counter()
        self.training = True

        def on_boundary(current: EpochCursor) -> None:
            reason = self._stop_reason()
            if reason is not None:  # after the last batch too: the retry then only scores the epoch
                self._save(current, snapshot(), current.train_s + time.perf_counter() - started, reason)
            if current.done == len(current.batches):  # scoring and the report follow: nothing to wait for
                self.training = False

        cursor.on_boundary = on_boundary
        return cursor

    def epoch_ended(self) -> None:
        """After the epoch's checkpoint is reported: a mid-epoch state it replaces is removed."""
        self._resumed = None
        if self._file_found:
            self._file_found = False
            path = self._path()
            try:
                self.storage[0].delete_dir(posixpath.dirname(path))
            except (FileNotFoundError, OSError):
                pass

    def close(self) -> None:
        """The trial's loop ended."""
        global _current
        self.training = False
        self.stopped.set()
        if _current is self:
            _current = None

    def _save(self, cursor: EpochCursor, state: dict[str, Any], train_s: float, reason: str) -> None:
        import torch

        from trainables._runtime import reported_checkpoint_name, rng_state

        where = f"epoch {cursor.epoch}, after batch {cursor.done} of {len(cursor.batches)}"
        path = self._path()
        try:
            if path is None:
                raise TrialPreempted(f"trial stopped at {where} ({reason}); not under Ray Tune, so nothing was saved")
            state = {**state, "rng": rng_state(), "mid_epoch": {
                "epoch": cursor.epoch, "base": reported_checkpoint_name() if cursor.epoch > 1 else None, "batches": cursor.batches, "done": cursor.done,
                "generator": cursor.generator.get_state(), "loss_sum": cursor.loss_sum, "seen": cursor.seen,
                "train_s": train_s,
            }}
            buffer = io.BytesIO()
            torch.save(state, buffer)
            filesystem = self.storage[0]
            filesystem.create_dir(posixpath.dirname(path), recursive=True)
            temporary = f"{path}.tmp"
            with filesystem.open_output_stream(temporary) as stream:
                stream.write(buffer.getvalue())
            filesystem.move(temporary, path)
            raise TrialPreempted(f"trial preempted at {where} ({reason}); its state is saved in {path} "
                                 "and the retry continues from there")
        finally:
            self.close()
