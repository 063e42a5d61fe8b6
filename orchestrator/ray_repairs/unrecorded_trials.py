"""Sets aside, before a resume, the trial folders Ray's last saved experiment state does not know.

Ray behaviour repaired: a trial started after the last experiment-state snapshot has a folder
(results, a checkpoint, a W&B run), but ``Tuner.restore`` rebuilds the searcher and the trials from
the snapshot, so that slot runs again as a *new* trial. Its old folder would then sit beside the
new one: reports and ``trials.csv`` (which add folders the state does not list) would count the
trial twice. The old folder is moved to
``<study>/unrecorded_trials/``, kept whole, out of the way of reports.

Private Ray names used: none; Ray's experiment-state layout (``trial_data`` entries'
``relative_logdir``), read through :mod:`orchestrator.ray_repairs.experiment_state`.
Upstream: none found.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from orchestrator.ray_repairs.experiment_state import newest_experiment_state

__all__ = ["UNRECORDED_DIR", "set_aside_unrecorded_trials"]

UNRECORDED_DIR = "unrecorded_trials"


def set_aside_unrecorded_trials(study_dir: Path, trial_prefix: str, log: Callable[[str], None]) -> list[Path]:
    """Moves the trial folders (names starting with ``trial_prefix``) Ray's newest state does not list.

    Every trial folder goes when no state is readable (nothing was recorded). Only call it while
    nothing runs on the study (before ``Tuner.restore``).

    Args:
        study_dir: The local study directory.
        trial_prefix: Trial folder names start with it (``<trainable>_``).
        log: Where to say which folder was moved.

    Returns:
        The folders' new places.
    """
    state = newest_experiment_state(study_dir) or {}  # none: nothing was recorded
    recorded = {json.loads(trial)["relative_logdir"] for trial, _ in state.get("trial_data", [])}
    moved = []
    for folder in sorted(study_dir.iterdir()):
        is_trial = folder.is_dir() and folder.name.startswith(trial_prefix)
        if is_trial and folder.name not in recorded:
            target = study_dir / UNRECORDED_DIR / folder.name
            target.parent.mkdir(exist_ok=True)
            folder.rename(target)
            moved.append(target)
            log(f"Trial folder {folder.name} was never recorded by Ray (started just before the crash); moved to {target}")
    return moved
