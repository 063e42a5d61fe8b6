"""What a run prints: corrotune's own lines, unless ``corrotune --verbose`` asks for Ray's too.

Ray speaks through four channels, each silenced through its public switch:

- Tune's console reporter (the "Configuration for experiment" box naming internal classes such as
  ``RecordedStateSearchGenerator``, "View detailed results here", a TensorBoard hint into Ray's
  temporary session folder): ``RAY_AIR_NEW_OUTPUT=0`` with ``RunConfig(verbose=0)`` selects the
  reporter that prints nothing at verbosity 0 (the new one prints its header even then).
- The ``ray`` Python loggers of the driver (token-auth notice, "Started a local Ray instance",
  ``util.py`` "may be a performance bottleneck" warnings, "Wrote the latest version of all
  result files"): ``ray.init(logging_level=logging.ERROR)``, so errors still show.
- Ray's C++ backend of the driver (``core_worker.cc`` notes such as the actor-restart one about
  constructor arguments in the object store, ray-project/ray#53727): ``RAY_BACKEND_LOG_LEVEL``
  ``fatal``. The node processes started by ``ray.init`` inherit it, so their session log files
  keep fatal lines only; ``--verbose`` keeps Ray's own levels.
  Ray's C++ logging announces that variable itself on stderr while ``ray.init`` starts the
  driver's core worker; :func:`ray_starting` holds back exactly that line.
- Worker stdout/stderr: ``ray.init(log_to_driver=False)`` (trial errors still reach the driver
  through Tune and each trial's ``error.txt``; progress through ``ProgressPrinter``).

A variable the user set already wins over these defaults. Call :func:`set_verbose` before
anything starts Ray.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from typing import Any, Iterator

__all__ = ["is_verbose", "quiet_environment", "ray_init_options", "ray_starting", "set_verbose", "tune_verbosity"]

# the one line RAY_BACKEND_LOG_LEVEL makes Ray's C++ logging print (logging.cc, at INFO, always)
_LOG_LEVEL_NOTICE = re.compile(rb"logging\.cc:\d+: Set ray log level from environment variable RAY_BACKEND_LOG_LEVEL")

_state = {"verbose": False}

# what a quiet run sets (unless already set); read by Ray when the Tuner runs / ray.init starts
QUIET_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_BACKEND_LOG_LEVEL": "fatal",
}


def set_verbose(verbose: bool) -> None:
    """Shows Ray's own console output (``True``) or corrotune's lines only (``False``, the default)."""
    _state["verbose"] = bool(verbose)


def is_verbose() -> bool:
    """Whether Ray's own console output is shown (``corrotune --verbose``)."""
    return _state["verbose"]


def quiet_environment() -> None:
    """Sets the environment switches of a quiet run (nothing with ``--verbose``); before ``ray.init``."""
    if is_verbose():
        return
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)


def ray_init_options() -> dict[str, Any]:
    """Keyword arguments of ``ray.init`` for the console: Ray's logs and worker output only with ``--verbose``."""
    if is_verbose():
        return {"logging_level": logging.INFO, "log_to_driver": True}
    return {"logging_level": logging.ERROR, "log_to_driver": False}


def tune_verbosity() -> int:
    """``RunConfig(verbose=...)``: Tune's default status reports with ``--verbose``, none otherwise."""
    return 1 if is_verbose() else 0


@contextlib.contextmanager
def ray_starting() -> Iterator[None]:
    """Around ``ray.init``: what it writes to stderr (file descriptor 2, C++ included) is passed on
    when it returns or raises, less Ray's notice of ``RAY_BACKEND_LOG_LEVEL`` (quiet runs only).

    The processes ``ray.init`` starts write to their own session log files, not to this stderr.
    """
    if is_verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().splitlines(keepends=True) if not _LOG_LEVEL_NOTICE.search(line)]
            if kept:
                os.write(2, b"".join(kept))
