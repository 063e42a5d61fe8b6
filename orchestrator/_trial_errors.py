"""What went wrong in an errored trial, in one line: exception type, message, where, full log.

Ray prints every failure of every retry as a full traceback (hundreds of lines for a study
whose trials all fail the same way); corrotune turns that off (``TUNE_PRINT_ALL_TRIAL_ERRORS``)
and prints each distinct error once at the end of the study, with the trials it hit and the
path of Ray's full log (``<trial>/error.txt``). :func:`quiet_ray_trial_errors` turns Ray's
printing off through its public switches: the ``TUNE_PRINT_ALL_TRIAL_ERRORS`` variable and a
filter on the ``ray.tune`` logger for its closing "Trials did not complete" line.

Example:
    >>> summary = summarize_error(result.error, f"{result.path}/error.txt")
    >>> summary.line()
    'NoopTrialError: noop trial failed at epoch 2 on purpose (at trainables/noop.py:63)'
"""

from __future__ import annotations

import logging
import os
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

__all__ = ["TrialError", "group_errors", "print_errors", "quiet_ray_trial_errors", "summarize_error"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+)', re.MULTILINE)
_LAST_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:\([\w.]+\))?): (.+)$", re.MULTILINE)
_LIBRARY_ROOTS = tuple(
    str(Path(p).resolve()) for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
)
MAX_MESSAGE = 300


@dataclass(frozen=True)
class TrialError:
    """One trial error, summarised.

    Attributes:
        kind: The exception's type name (``RuntimeError``, ``NoopTrialError``).
        message: Its message (first line, at most 300 characters).
        where: ``file:line`` of the innermost frame in project or user code (not Ray, torch or
            the standard library), relative to the project root when inside it; None if unknown.
        log: Where the full tracebacks are (Ray's ``error.txt`` in the trial folder).
    """

    kind: str
    message: str
    where: str | None
    log: str

    def line(self) -> str:
        """``Type: message (at file:line)``."""
        return f"{self.kind}: {self.message}" + (f" (at {self.where})" if self.where else "")


def _is_library(path: str) -> bool:
    resolved = str(Path(path).resolve()) if Path(path).is_absolute() else path
    return path.startswith("<") or "site-packages" in path or "dist-packages" in path or resolved.startswith(_LIBRARY_ROOTS)


def _where(traceback_text: str) -> str | None:
    """The innermost frame of a traceback that is not in a library, as ``file:line``."""
    frames = [(path, line) for path, line in _FRAME.findall(traceback_text) if not _is_library(path)]
    if not frames:
        return None
    path, line = frames[-1]
    try:
        path = str(Path(path).resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        pass
    return f"{path}:{line}"


def _short(message: str) -> str:
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return first if len(first) <= MAX_MESSAGE else first[: MAX_MESSAGE - 3] + "..."


def summarize_error(error: Any, log: str, text: str | None = None) -> TrialError:
    """Summarises a trial's error.

    Args:
        error: What Ray kept of it (``Result.error``: a ``RayTaskError`` whose ``cause`` is the
            trainable's exception, a ``RayActorError``, a ``TuneError``), or None when Ray could
            not unpickle it.
        log: The path of the trial's ``error.txt``.
        text: The traceback text when ``error`` is None (the end of ``error.txt``).
    """
    text = str(error) if error is not None else (text or "")
    cause = getattr(error, "cause", None) if error is not None else None
    if cause is None and error is not None and not type(error).__name__.startswith("RayTaskError"):
        cause = error
    if cause is not None:
        kind, message = type(cause).__name__, str(cause)
    else:  # the traceback's last "module.Type: message" line
        last = _LAST_LINE.findall(text)
        kind, message = (last[-1][0].rsplit(".", 1)[-1], last[-1][1]) if last else ("Error", text)
    return TrialError(kind=kind, message=_short(message) or "(no message)", where=_where(text), log=log)


def group_errors(errors: Iterable[tuple[str, TrialError]]) -> list[tuple[TrialError, list[str]]]:
    """``(trial id, error)`` pairs grouped by identical type, message and place; first seen first."""
    groups: dict[tuple[str, str, str | None], tuple[TrialError, list[str]]] = {}
    for trial_id, error in errors:
        groups.setdefault((error.kind, error.message, error.where), (error, []))[1].append(trial_id)
    return list(groups.values())


def print_errors(groups: list[tuple[TrialError, list[str]]], console: Any) -> None:
    """Prints each distinct error once, with its trials and the full log of the first one."""
    for error, trial_ids in groups:
        who = f"trial {trial_ids[0]}" if len(trial_ids) == 1 else f"{len(trial_ids)} trials ({', '.join(trial_ids)})"
        console.print(f"[red]{who} errored:[/red] ", end="", highlight=False)
        console.print(error.line(), markup=False, highlight=False, soft_wrap=True)
        console.print(f"  full log: {error.log}", markup=False, highlight=False, soft_wrap=True)



class _SummarisedByCorrotune(logging.Filter):
    """Drops Ray's closing "Trials did not complete: [...]" line (the study's end lists the errors)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Trials did not complete")


def quiet_ray_trial_errors() -> None:
    """Stops Ray printing each failure of each retry (a full traceback) and its list of errored trials.

    Call in the driver before the Tuner runs; ``TUNE_PRINT_ALL_TRIAL_ERRORS`` set by the user wins.
    """
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    tune_logger = logging.getLogger("ray.tune.tune")
    if not any(isinstance(f, _SummarisedByCorrotune) for f in tune_logger.filters):
        tune_logger.addFilter(_SummarisedByCorrotune())
