"""Exit statuses of the ``corrotune`` commands, in one place (the README's "Command line" lists them).

Example:
    >>> study_exit_status(num_trials=4, num_errors=1)
    3
"""

from __future__ import annotations

__all__ = [
    "EXIT_ALL_ERRORED", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_INVALID", "EXIT_OK", "EXIT_SCAN_WARNINGS", "EXIT_SOME_ERRORED",
    "EXIT_TERMINATED", "interrupted_exit_status", "study_exit_status",
]

EXIT_OK = 0
"""``run``/``resume``: every trial finished. ``status``, ``validate``: the study was read."""
EXIT_ALL_ERRORED = 1
"""``run``/``resume``: every trial errored (nothing to rank)."""
EXIT_INVALID = 2
"""The study (file, overrides, data, storage, cluster or study directory) cannot be used; nothing was started."""
EXIT_SOME_ERRORED = 3
"""``run``/``resume``: some trials errored, the others finished (the leaderboard ranks those first)."""
EXIT_SCAN_WARNINGS = 1
"""``scan``: warnings only (0: nothing found; 2, :data:`EXIT_INVALID`: errors, files a run would skip)."""
EXIT_INTERNAL = 70
"""Any command: corrotune itself failed unexpectedly (sysexits' EX_SOFTWARE); ``--debug`` shows the traceback."""
EXIT_INTERRUPTED = 130
"""``run``/``resume``: stopped by SIGINT (Ctrl-C) with the study saved; ``corrotune resume`` continues it."""
EXIT_TERMINATED = 143
"""``run``/``resume``: stopped by SIGTERM (e.g. the driver's node is drained) with the study saved."""


def interrupted_exit_status(signum: int) -> int:
    """The shell's convention for a command ended by signal ``signum``: 128 + ``signum`` (130, 143)."""
    return 128 + int(signum)


def study_exit_status(num_trials: int, num_errors: int) -> int:
    """The exit status of a ``run`` or ``resume`` that ended with ``num_errors`` of ``num_trials`` errored."""
    if not num_errors:
        return EXIT_OK
    return EXIT_ALL_ERRORED if num_errors >= num_trials else EXIT_SOME_ERRORED
