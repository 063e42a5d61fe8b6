"""Repairs the driver files that a SIGKILL in the middle of Ray's sync can leave cut short or missing.

Ray's driver keeps the experiment's files in a staging folder and copies the whole folder to
the study directory with each snapshot, rewriting every file: ``tuner.pkl`` and each session's
``experiment_state-*.json``, ``search_gen_state-*.json`` and ``searcher-state-*.pkl``. A driver
killed mid-copy leaves some of them cut short (Ray's own filesystem writes in place) or not yet
written (a new session's first copy; with :mod:`orchestrator._atomic_fs`, which replaces files
whole, only a temporary file beside the target), and ``Tuner.restore`` then fails on them or
restarts the experiment. Before a resume, :func:`repair_driver_files` deletes such temporary
files, puts back ``tuner.pkl`` from the copy :func:`back_up_tuner` keeps (its content never
changes after the first start) and sets aside the newest session's state files unless all
three are there and readable (Ray picks the newest of each kind on its own), so Ray resumes
from the session before (the runner then sets aside the trial folders that state does not know).
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path
from typing import Callable

from orchestrator._atomic_fs import atomic_local_filesystem, remove_leftovers

__all__ = ["BACKUP_DIR", "UNREADABLE_DIR", "back_up_tuner", "repair_driver_files"]

TUNER_FILE = "tuner.pkl"
BACKUP_DIR = ".corrotune"
UNREADABLE_DIR = "unreadable_state"
_SESSION_FILES = ("experiment_state-{}.json", "search_gen_state-{}.json", "searcher-state-{}.pkl")
_SESSION = re.compile(r"^(?:experiment_state|search_gen_state|searcher-state)-(.+)\.(?:json|pkl)$")


def _readable(path: Path) -> bool:
    """Whether ``path`` holds whole JSON or a whole pickle (Ray's ``search_gen_state-*.json`` is one)."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    for load in (json.loads, pickle.loads):
        try:
            load(data)
        except Exception:  # noqa: BLE001 - cut-short files fail in many ways (EOFError, UnpicklingError, ...)
            continue
        return True
    return False


def _copy_atomically(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_local_filesystem().copy_file(str(source), str(target))


def back_up_tuner(study_dir: Path) -> None:
    """Keeps a copy of a readable ``tuner.pkl`` under ``<study>/.corrotune/``."""
    tuner = study_dir / TUNER_FILE
    if tuner.is_file() and _readable(tuner):
        _copy_atomically(tuner, study_dir / BACKUP_DIR / TUNER_FILE)


def repair_driver_files(study_dir: Path, log: Callable[[str], None]) -> bool:
    """Makes the study's driver files readable again; False when no experiment state is left.

    Raises:
        ValueError: ``tuner.pkl`` is unreadable and there is no readable copy of it.
    """
    if leftovers := remove_leftovers(study_dir):
        log(f"deleted {len(leftovers)} partly written file(s) the killed driver left")
    tuner, backup = study_dir / TUNER_FILE, study_dir / BACKUP_DIR / TUNER_FILE
    if tuner.is_file() and not _readable(tuner):
        if not (backup.is_file() and _readable(backup)):
            raise ValueError(f"{tuner} is unreadable (cut short when the driver was killed) and there is no copy of it")
        _copy_atomically(backup, tuner)
        log(f"{TUNER_FILE} was cut short when the driver was killed; put back from {backup}")
    back_up_tuner(study_dir)  # studies started before copies were kept get one now

    sessions = sorted({m.group(1) for p in study_dir.iterdir() if (m := _SESSION.match(p.name))}, reverse=True)
    for session in sessions:  # newest first: Ray resumes from the newest of each kind of file
        files = [study_dir / name.format(session) for name in _SESSION_FILES]
        if all(f.is_file() and _readable(f) for f in files):
            return True
        aside = study_dir / UNREADABLE_DIR
        aside.mkdir(exist_ok=True)
        for f in files:
            if f.is_file():
                shutil.move(str(f), aside / f.name)
        log(f"the experiment state of session {session} was cut short or left incomplete when the driver "
            f"was killed; set aside in {aside}, resuming from the state before it")
    return False
