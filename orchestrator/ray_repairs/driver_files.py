"""Repairs the driver files that a SIGKILL in the middle of Ray's sync can leave cut short or missing.

Ray's driver keeps the experiment's files in a staging folder and copies the whole folder to
the study directory with each snapshot, rewriting every file: ``tuner.pkl`` and each session's
``experiment_state-*.json``, ``search_gen_state-*.json`` and ``searcher-state-*.pkl``. A driver
killed mid-copy leaves some of them cut short (Ray's own filesystem writes in place) or not yet
written (a new session's first copy; with :mod:`orchestrator.ray_repairs.atomic_fs`, which replaces files
whole, only a temporary file beside the target), and ``Tuner.restore`` then fails on them or
restarts the experiment. Before a resume, :func:`repair_driver_files` deletes such temporary
files, puts back ``tuner.pkl`` from the copy :func:`back_up_tuner` keeps (its content never
changes after the first start) and sets aside the newest session's state files unless all
three are there and readable (Ray picks the newest of each kind on its own), so Ray resumes
from the session before (the runner then sets aside the trial folders that state does not know).

A cut-short session is first looked for, whole, in Ray's own staging folder
(``$RAY_TMPDIR/ray/session_*/artifacts/*/<study>/driver_artifacts/``, left on the driver's
machine) and put back from there. Without such a copy, a session whose files were written but
cut short is set aside only when no trial folder with results (a reported epoch or a
checkpoint) depends on it: a finished trial is never moved out of the study or run again
because the state that recorded it was cut short. (A session that lacks a file never finished
its first snapshot; the trials it started are set aside as any started after the last one.)
Otherwise :class:`StateLostError` says which file is cut short, which trials only it records,
and how to repair it, and nothing is changed.

Private Ray names used: none, but Ray's file names and its staging layout
(``session_*/artifacts/*/<study>/driver_artifacts``). Upstream: ray-project/ray#58179
(``Tuner.restore`` on a cut-short ``tuner.pkl``).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from orchestrator.ray_repairs.atomic_fs import atomic_local_filesystem, remove_leftovers

__all__ = ["BACKUP_DIR", "UNREADABLE_DIR", "StateLostError", "back_up_tuner", "repair_driver_files"]

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


class StateLostError(ValueError):
    """The newest experiment state is cut short and trials with results depend on it (nothing was changed)."""


def _staging_copies(study_dir: Path, names: list[str], ray_tmpdir: str | os.PathLike | None) -> list[Path] | None:
    """Whole copies of ``names`` in one of Ray's staging folders for this study, else None."""
    root = Path(ray_tmpdir or os.environ.get("RAY_TMPDIR") or tempfile.gettempdir())
    for staged in sorted(root.glob(f"ray/session_*/artifacts/*/{study_dir.name}/driver_artifacts"), reverse=True):
        copies = [staged / name for name in names]
        if all(c.is_file() and _readable(c) for c in copies):
            return copies
    return None


def _recorded_folders(state_file: Path) -> set[str]:
    state = json.loads(state_file.read_text())
    return {json.loads(trial).get("relative_logdir", "") for trial, _ in state.get("trial_data", [])}


def _results_in(folder: Path) -> str | None:
    """What a trial folder holds (``"finished, 3 epochs, checkpoint_000002"``); None: no result, no checkpoint."""
    lines = []
    try:
        lines = [json.loads(line) for line in (folder / "result.json").read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        pass
    checkpoints = sorted(p.name for p in folder.glob("checkpoint_*") if p.is_dir())
    if not lines and not checkpoints:
        return None
    parts = (["finished"] if lines and lines[-1].get("done") else []) + [f"{len(lines)} epoch(s) reported"]
    return ", ".join(parts + checkpoints[-1:])


def _refuse_losing_trials(study_dir: Path, cut: list[str], used: str | None, trial_prefix: str, unreadable: list[Path]) -> None:
    """Raises :class:`StateLostError` when trial folders with results are known only to the ``cut`` sessions."""
    recorded = _recorded_folders(study_dir / f"experiment_state-{used}.json") if used else set()
    lost = {
        folder.name: held
        for folder in sorted(study_dir.iterdir())
        if folder.is_dir() and folder.name.startswith(trial_prefix) and (folder / "params.json").is_file()
        and folder.name not in recorded and (held := _results_in(folder))
    }
    if not lost:
        return
    files = ", ".join(f"{p.name} (cut short, {p.stat().st_size} bytes)" for p in unreadable)
    before = f"the state before it (session {used})" if used else "no state at all (the study would start again from scratch)"
    raise StateLostError("\n".join([
        f"the newest experiment state (session {cut[0]}) is unreadable: {files}; Ray's staging folders hold no whole copy",
        f"resuming would fall back to {before}, which does not record {len(lost)} trial(s) that have results:",
        *(f"{name}: {held}" for name, held in lost.items()),
        "nothing was changed; to repair, either:",
        f"put whole copies of those files back into {study_dir} (from a backup), then `corrotune resume {study_dir}` again;",
        "or keep this folder as it is (its trial folders keep their results; `corrotune status` reads them) and run "
        "the study again under another name (`corrotune run STUDY --set name=NEW`)",
    ]))


def repair_driver_files(study_dir: Path, log: Callable[[str], None], trial_prefix: str = "", ray_tmpdir: str | os.PathLike | None = None) -> bool:
    """Makes the study's driver files readable again; False when no experiment state is left.

    Args:
        study_dir: The local study directory.
        log: Where to say what was repaired.
        trial_prefix: Trial folder names start with it (``<trainable>_``).
        ray_tmpdir: Where Ray's session folders are (default ``$RAY_TMPDIR``, else the temp dir).

    Raises:
        ValueError: ``tuner.pkl`` is unreadable and there is no readable copy of it.
        StateLostError: the newest session's state is unreadable, Ray kept no whole copy, and
            trial folders with results are recorded only there (nothing was changed).
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
    aside = study_dir / UNREADABLE_DIR
    cut: list[str] = []  # newest first: Ray resumes from the newest of each kind of file
    for session in sessions:
        files = [study_dir / name.format(session) for name in _SESSION_FILES]
        if all(f.is_file() and _readable(f) for f in files):
            break
        if not cut and (copies := _staging_copies(study_dir, [f.name for f in files], ray_tmpdir)):
            _set_aside(files, aside)
            for copy, target in zip(copies, files):
                _copy_atomically(copy, target)
            log(f"the experiment state of session {session} was cut short or left incomplete; set aside in {aside} "
                f"and put back whole from Ray's staging copy in {copies[0].parent}")
            return True
        cut.append(session)
    used = next((s for s in sessions if s not in cut), None)
    damaged = [f for f in (study_dir / name.format(cut[0]) for name in _SESSION_FILES) if f.is_file() and not _readable(f)] if cut else []
    if damaged:  # a snapshot was written, then cut short (only missing files: the session never made one)
        _refuse_losing_trials(study_dir, cut, used, trial_prefix, damaged)
    for session in cut:
        _set_aside([study_dir / name.format(session) for name in _SESSION_FILES], aside)
        log(f"the experiment state of session {session} was cut short or left incomplete when the driver "
            f"was killed; set aside in {aside}, resuming from the state before it")
    return used is not None


def _set_aside(files: list[Path], aside: Path) -> None:
    """Moves ``files`` into ``aside`` (a file set aside earlier under the same name is kept too)."""
    aside.mkdir(exist_ok=True)
    for f in files:
        if f.is_file():
            target, n = aside / f.name, 0
            while target.exists():
                n += 1
                target = aside / f"{f.name}.{n}"
            shutil.move(str(f), target)
