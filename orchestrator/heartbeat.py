"""The driver heartbeat, ``<study>/corrotune_driver.json``: is a study running, finished or crashed?

The driver rewrites it every few seconds while it runs (``TrialsTableCallback`` does) and
marks it ``finished`` or ``interrupted`` when the experiment ends; a driver stopped by a
signal (Ctrl-C, a node drain's SIGTERM) also records the signal (:func:`record_stop_signal`),
which makes the study "preempted"; a driver that dies leaves it saying ``running``, with a pid
that is gone and a time that grows stale.

Example:
    >>> driver_state("corrotune-results/demo")
    DriverState(state='crashed', detail='driver pid 4711 on gpu-01 is gone (last heartbeat 5 min ago)')
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corrotune.files import write_json

__all__ = ["DRIVER_FILE", "DriverState", "driver_state", "read_heartbeat", "record_stop_signal", "write_heartbeat"]

DRIVER_FILE = "corrotune_driver.json"


def write_heartbeat(
    study_dir: str | os.PathLike, state: str, started: float | None = None, stop_signal: str | None = None
) -> dict[str, Any]:
    """Writes the heartbeat ``{pid, hostname, started, updated, state[, signal]}`` atomically.

    Args:
        study_dir: The study directory.
        state: ``running``, ``finished`` (every trial ended) or ``interrupted`` (the driver
            stopped with trials unfinished).
        started: When this driver started (Unix seconds); now by default.
        stop_signal: The signal that stopped the driver (``SIGINT``, ``SIGTERM``), if one did.
    """
    now = time.time()
    beat = {
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "started": started if started is not None else now,
        "updated": now,
        "state": state,
    }
    if stop_signal:
        beat["signal"] = stop_signal
    path = Path(study_dir) / DRIVER_FILE
    write_json(path, beat)
    return beat


def record_stop_signal(study_dir: str | os.PathLike, stop_signal: str) -> dict[str, Any]:
    """Marks the study ``interrupted`` by ``stop_signal`` after the driver stopped cleanly on it."""
    beat = read_heartbeat(study_dir) or {}
    return write_heartbeat(study_dir, "interrupted", beat.get("started"), stop_signal=stop_signal)


def read_heartbeat(study_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The driver's last heartbeat, or ``None`` when there is none (or it is unreadable)."""
    try:
        beat = json.loads((Path(study_dir) / DRIVER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return beat if isinstance(beat, dict) else None


@dataclass(frozen=True)
class DriverState:
    """What the driver of a study is doing.

    Attributes:
        state: ``finished``, ``running``, ``preempted`` (stopped cleanly by a signal: Ctrl-C, a
            node drain), ``interrupted`` (stopped with trials unfinished), ``crashed`` (the
            driver vanished without recording a stop) or ``unknown`` (no heartbeat to go by).
        detail: One line for people.
    """

    state: str
    detail: str

    @property
    def resumable(self) -> bool:
        """Whether ``corrotune resume`` is what the study needs."""
        return self.state in ("preempted", "interrupted", "crashed", "unknown")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM  # alive, but another user's
    return True


def _ago(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def driver_state(study_dir: str | os.PathLike, stale_after_s: float = 30.0, now: float | None = None) -> DriverState:
    """Tells a finished, running, interrupted or crashed study apart by its heartbeat.

    Running means a heartbeat fresher than ``stale_after_s`` and, when the driver ran on this
    host, its process still alive; a ``running`` heartbeat that is stale or whose process is
    gone means the driver crashed (or was killed).

    Args:
        study_dir: The study directory.
        stale_after_s: A heartbeat older than this means the driver is gone.
        now: The time to judge at (Unix seconds); now by default.
    """
    beat = read_heartbeat(study_dir)
    if beat is None:
        return DriverState("unknown", f"no driver heartbeat ({DRIVER_FILE}) in the study directory")
    now = time.time() if now is None else now
    age = now - float(beat.get("updated") or 0.0)
    host, pid, state = beat.get("hostname"), int(beat.get("pid") or 0), beat.get("state")
    where = f"driver pid {pid} on {host}"
    if state == "finished":
        return DriverState("finished", f"finished {_ago(age)}")
    if state == "interrupted" and beat.get("signal"):
        return DriverState("preempted", f"{where} stopped on {beat['signal']} {_ago(age)}, with its state and every "
                                        "running trial's current batch saved")
    if state == "interrupted":
        return DriverState("interrupted", f"{where} stopped {_ago(age)} with trials unfinished")
    if host == socket.gethostname() and pid > 0 and not _pid_alive(pid):
        return DriverState("crashed", f"{where} is gone (last heartbeat {_ago(age)})")
    if age > stale_after_s:
        return DriverState("crashed", f"{where} silent since {_ago(age)}")
    return DriverState("running", f"{where}, last heartbeat {_ago(age)}")
