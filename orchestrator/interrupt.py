"""Ctrl-C or SIGTERM to the driver: a final snapshot, every trial stopped at a batch, the resume command.

The first SIGINT or SIGTERM while a study runs:

1. writes :data:`~trainables.preemption.STOP_FILE` into the study directory: each running trial
   saves its mid-epoch state at its next batch boundary and stops (``trainables/preemption.py``);
2. hands over to Ray Tune's own graceful stop, its SIGUSR1 handler (``ray/tune/tune.py``,
   ``_setup_signal_catching``; documented in Tune's "Stopping and resuming" guide as the way
   to interrupt a run besides SIGINT): the loop ends, the experiment state is written one last
   time (``runner.checkpoint(force=True, wait=True)``) and Tune stops the trials' actors, which
   finish their current batch first (Tune waits ≥ 10 s before killing an actor);
3. when ``Tuner.fit`` returns, the heartbeat records the signal (``corrotune status`` then says
   "preempted", :mod:`orchestrator.heartbeat`) and the command ends with the exact
   ``corrotune resume`` line and exit status 130 (SIGINT) or 143 (SIGTERM).

A second signal exits at once (the snapshot of step 2 may then be missing: resume falls back on
the one before). Ray's own SIGINT handler is switched off (``TUNE_DISABLE_SIGINT_HANDLER``) so
that Ctrl-C reaches this one first, and Ray's driver SIGTERM handler (``ray.init``'s, a plain
``sys.exit``) is replaced while the study runs: it would skip the final snapshot.

Example:
    >>> with DriverInterrupt(place, console) as interrupt:
    ...     results = tuner.fit()
    >>> interrupt.signum  # None, or the signal that stopped the study
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from rich.console import Console

from orchestrator.storage import StudyPlace

__all__ = ["DriverInterrupt", "signal_name"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def signal_name(signum: int) -> str:
    """``SIGINT``, ``SIGTERM``, ..."""
    return signal.Signals(signum).name


def _tune_is_listening() -> bool:
    """Whether ``Tuner.fit`` has installed its SIGUSR1 handler (the default action would kill us)."""
    handler = signal.getsignal(signal.SIGUSR1)
    return callable(handler)


class DriverInterrupt:
    """Handles SIGINT and SIGTERM around ``Tuner.fit`` (see the module doc).

    Args:
        place: The study's storage.
        console: Where the first signal is acknowledged.

    Attributes:
        signum: The signal that interrupted the study, or None.
    """

    def __init__(self, place: StudyPlace, console: Console) -> None:
        self.place, self.console = place, console
        self.signum: int | None = None
        self._saved: dict[int, Any] = {}
        self._saved_env: str | None = None

    def __enter__(self) -> "DriverInterrupt":
        self._remove_stop_file()  # left by an earlier interrupted driver: the trials must run now
        self._saved_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        for signum in _SIGNALS:
            self._saved[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, kind, error, traceback) -> bool:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        if self._saved_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._saved_env
        if self.signum is not None:
            self._remove_stop_file()  # the trials have stopped; resume must not find it
        # a signal before Tune listened ends the study the same way (nothing was running yet)
        return self.signum is not None and kind is KeyboardInterrupt

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            os.write(2, f"\n{signal_name(signum)} again: exiting now, without waiting for the trials to stop.\n".encode())
            os._exit(128 + signum)
        self.signum = signum
        self.console.print(
            f"\n{signal_name(signum)} received: stopping every trial at its next batch (its state is saved) "
            "and saving the study; press Ctrl-C again to exit at once.", markup=False, highlight=False, soft_wrap=True,
        )
        self._write_stop_file(signum)
        # the trials' stops come back as errors of train() calls Tune no longer waits for; Ray would
        # print each as an "Unhandled error" (its own switch, checked when the error arrives)
        os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
        if not _tune_is_listening():
            raise KeyboardInterrupt
        signal.raise_signal(signal.SIGUSR1)  # Tune's graceful stop (ray/tune/tune.py)

    def _write_stop_file(self, signum: int) -> None:
        from trainables.preemption import STOP_FILE

        try:
            path = self.place.local_dir / STOP_FILE
            path.write_text(json.dumps({"signal": signal_name(signum), "pid": os.getpid(), "time": time.time()}))
            self.place.publish(STOP_FILE)
        except OSError as err:  # the trials then stop at their epoch's end, when Tune stops them
            self.console.print(f"could not ask the trials to stop at their next batch ({err})", markup=False)

    def _remove_stop_file(self) -> None:
        from trainables.preemption import STOP_FILE

        (self.place.local_dir / STOP_FILE).unlink(missing_ok=True)
        if self.place.remote:
            import pyarrow.fs

            filesystem, path = pyarrow.fs.FileSystem.from_uri(self.place.remote_path(STOP_FILE))
            if filesystem.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
                filesystem.delete_file(path)
